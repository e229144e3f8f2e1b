//! The iFlow model catalogue (protocol section 10), the thinking capability
//! registry (5.3) and the output-limit table (5.4) of the official 0.5.19 client.

/// One model offered by `GET /v1/models`.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    pub id: &'static str,
    pub label: &'static str,
}

/// The official picker, then legacy ids still accepted by older clients.
pub const CATALOGUE: &[ModelInfo] = &[
    ModelInfo {
        id: "glm-4.7",
        label: "GLM-4.7",
    },
    ModelInfo {
        id: "iFlow-ROME-30BA3B",
        label: "iFlow-ROME-30BA3B",
    },
    ModelInfo {
        id: "deepseek-v3.2-chat",
        label: "DeepSeek-V3.2",
    },
    ModelInfo {
        id: "glm-5",
        label: "GLM-5",
    },
    ModelInfo {
        id: "qwen3-coder-plus",
        label: "Qwen3-Coder-Plus",
    },
    ModelInfo {
        id: "kimi-k2-thinking",
        label: "Kimi-K2-Thinking",
    },
    ModelInfo {
        id: "minimax-m2.5",
        label: "MiniMax-M2.5",
    },
    ModelInfo {
        id: "kimi-k2.5",
        label: "Kimi-K2.5",
    },
    ModelInfo {
        id: "kimi-k2-0905",
        label: "Kimi-K2-0905",
    },
    ModelInfo {
        id: "glm-4.6",
        label: "GLM-4.6",
    },
    ModelInfo {
        id: "kimi-k2",
        label: "Kimi-K2",
    },
    ModelInfo {
        id: "qwen3-max",
        label: "Qwen3-Max",
    },
    ModelInfo {
        id: "qwen3-vl-plus",
        label: "Qwen3-VL-Plus",
    },
    ModelInfo {
        id: "deepseek-v3.1",
        label: "DeepSeek-V3.1",
    },
    ModelInfo {
        id: "deepseek-r1",
        label: "DeepSeek-R1",
    },
];

/// How hard the model should think; the official default is `Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningLevel {
    Low,
    Medium,
    High,
}

/// The thinking family a model name falls in: first match wins, in the
/// official registry's order, on the lowercased name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingFamily {
    O1,
    DeepSeek,
    Glm47,
    Glm5,
    Glm,
    Claude35Sonnet,
    Claude,
    Reasoning,
    KimiK25,
    Thinking,
    Qwen4b,
    Mimo,
    None,
}

/// The thinking family of a lowercased model name.
fn family_of(m: &str) -> ThinkingFamily {
    if m.starts_with("o1-preview") || m.starts_with("o1-mini") {
        ThinkingFamily::O1
    } else if m.contains("deepseek") {
        ThinkingFamily::DeepSeek
    } else if m.contains("glm-4.7") {
        ThinkingFamily::Glm47
    } else if m.contains("glm-5") {
        ThinkingFamily::Glm5
    } else if m.contains("glm-") {
        ThinkingFamily::Glm
    } else if m.starts_with("claude-3.5-sonnet") {
        ThinkingFamily::Claude35Sonnet
    } else if ["claude", "haiku", "sonnet", "opus"]
        .iter()
        .any(|k| m.contains(k))
    {
        ThinkingFamily::Claude
    } else if m.contains("reasoning") {
        ThinkingFamily::Reasoning
    } else if m.starts_with("kimi-k2.5") {
        ThinkingFamily::KimiK25
    } else if m.contains("thinking") {
        ThinkingFamily::Thinking
    } else if m.find("qwen").is_some_and(|i| m[i..].contains("4b")) {
        ThinkingFamily::Qwen4b
    } else if m.contains("mimo-") {
        ThinkingFamily::Mimo
    } else {
        ThinkingFamily::None
    }
}

/// The default output limit (`max_new_tokens`) for a lowercased model name.
fn limit_of(m: &str) -> u64 {
    let has = |k: &str| m.contains(k);
    if has("kimi") {
        if has("k2.5") { 32768 } else { 32000 }
    } else if has("iflow-rome-30ba3b") || has("minimax") || has("mimo") {
        64000
    } else if has("glm") {
        32000
    } else if ["claude", "haiku", "sonnet", "opus"].iter().any(|k| has(k)) {
        64000
    } else if has("deepseek") {
        if has("v3.2-reasoner") {
            64000
        } else if has("v3") {
            8192
        } else if has("r1") {
            32000
        } else {
            8000
        }
    } else if has("qwen3") {
        if has("coder") {
            64000
        } else if has("max-preview") {
            32000
        } else {
            8192
        }
    } else if has("qwen") {
        if has("max") || has("plus") {
            8192
        } else {
            8000
        }
    } else if has("gpt") {
        if has("32k") { 4096 } else { 16384 }
    } else {
        8000
    }
}

/// Everything the body rules read from a model name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelTraits {
    pub thinking: ThinkingFamily,
    /// The default `max_new_tokens`.
    pub output_limit: u64,
    /// GLM-4.7 and GLM-5 get temperature 1 and top_p 0.95.
    pub glm_sampling: bool,
    /// Kimi-K2.5 gets fixed sampling fields.
    pub kimi_k25: bool,
    /// DeepSeek models other than the reasoner also get `max_tokens`.
    pub deepseek_max_tokens: bool,
}

/// How many model names each thread remembers the traits of.
const REMEMBERED: usize = 8;
/// Longer names are worked out every time rather than remembered.
const REMEMBERED_LEN: usize = 128;

/// The traits of a model name. Working them out takes a dozen substring
/// searches, the costliest part of the body rules, and a gateway sees the
/// same few names over and over: each thread remembers the last few.
pub fn traits(model: &str) -> ModelTraits {
    thread_local! {
        static SEEN: std::cell::RefCell<Remembered> = const {
            std::cell::RefCell::new(Remembered { next: 0, names: Vec::new() })
        };
    }
    if model.len() > REMEMBERED_LEN {
        return work_out(model);
    }
    SEEN.with_borrow_mut(|seen| seen.traits(model))
}

/// The last few names a thread worked out; the oldest gives way.
struct Remembered {
    next: usize,
    names: Vec<(Box<str>, ModelTraits)>,
}

impl Remembered {
    fn traits(&mut self, model: &str) -> ModelTraits {
        if let Some((_, t)) = self.names.iter().find(|(name, _)| **name == *model) {
            return *t;
        }
        let t = work_out(model);
        if self.names.len() < REMEMBERED {
            self.names.push((model.into(), t));
        } else {
            self.names[self.next] = (model.into(), t);
            self.next = (self.next + 1) % REMEMBERED;
        }
        t
    }
}

fn work_out(model: &str) -> ModelTraits {
    let m = model.to_ascii_lowercase();
    ModelTraits {
        thinking: family_of(&m),
        output_limit: limit_of(&m),
        glm_sampling: m.contains("glm-4.7") || m.contains("glm-5"),
        kimi_k25: m.starts_with("kimi-k2.5"),
        deepseek_max_tokens: m.contains("deepseek") && m != "deepseek-v3.2-reasoner",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thinking_family(model: &str) -> ThinkingFamily {
        traits(model).thinking
    }

    fn output_limit(model: &str) -> u64 {
        traits(model).output_limit
    }

    /// The remembered traits are those of the name asked for, also after
    /// more names than are remembered, for names differing only in case, and
    /// for names too long to remember.
    #[test]
    fn remembered_traits_match_the_name() {
        let long = format!("glm-5-{}", "x".repeat(REMEMBERED_LEN));
        let mut names: Vec<String> = CATALOGUE.iter().map(|m| m.id.to_string()).collect();
        names.extend(
            ["GLM-5", "Kimi-K2.5", "deepseek-v3.2-reasoner", "gpt-4-32k"].map(String::from),
        );
        names.push(long);
        assert!(names.len() > 2 * REMEMBERED);
        // More names than are remembered: every lookup works them out anew.
        for _ in 0..3 {
            for name in &names {
                assert_eq!(traits(name), work_out(name), "{name}");
            }
        }
        // As many as are remembered: after the first round, every lookup
        // is answered from memory.
        for _ in 0..3 {
            for name in &names[..REMEMBERED] {
                assert_eq!(traits(name), work_out(name), "{name}");
            }
        }
        assert_eq!(traits("GLM-5").thinking, ThinkingFamily::Glm5);
        assert!(traits("Kimi-K2.5").kimi_k25 && !traits("kimi-k2").kimi_k25);
        assert!(traits("deepseek-v3.2-chat").deepseek_max_tokens);
        assert!(!traits("DeepSeek-V3.2-Reasoner").deepseek_max_tokens);
        assert_eq!(traits("qwen3-coder-plus").output_limit, 64000);
    }

    #[test]
    fn families_follow_registry_order() {
        assert_eq!(
            thinking_family("deepseek-v3.2-chat"),
            ThinkingFamily::DeepSeek
        );
        assert_eq!(thinking_family("glm-4.7"), ThinkingFamily::Glm47);
        assert_eq!(thinking_family("GLM-5"), ThinkingFamily::Glm5);
        assert_eq!(thinking_family("glm-4.6-exp"), ThinkingFamily::Glm);
        assert_eq!(thinking_family("kimi-k2.5"), ThinkingFamily::KimiK25);
        assert_eq!(
            thinking_family("kimi-k2-thinking"),
            ThinkingFamily::Thinking
        );
        assert_eq!(thinking_family("QWen3-4B"), ThinkingFamily::Qwen4b);
        assert_eq!(thinking_family("qwen3-coder-plus"), ThinkingFamily::None);
        assert_eq!(thinking_family("minimax-m2.5"), ThinkingFamily::None);
        assert_eq!(thinking_family("iFlow-ROME-30BA3B"), ThinkingFamily::None);
        assert_eq!(
            thinking_family("claude-3.5-sonnet-x"),
            ThinkingFamily::Claude35Sonnet
        );
    }

    #[test]
    fn output_limits_match_the_official_table() {
        let cases = [
            ("kimi-k2.5", 32768),
            ("kimi-k2-0905", 32000),
            ("kimi-k2-thinking", 32000),
            ("iFlow-ROME-30BA3B", 64000),
            ("minimax-m2.5", 64000),
            ("glm-5", 32000),
            ("glm-4.6-exp", 32000),
            ("deepseek-v3.2-reasoner", 64000),
            ("deepseek-v3.2-chat", 8192),
            ("deepseek-r1", 32000),
            ("qwen3-coder-plus", 64000),
            ("qwen3-max-preview", 32000),
            ("qwen3-max", 8192),
            ("qwen-max", 8192),
            ("qwen-turbo", 8000),
            ("unknown", 8000),
        ];
        for (model, limit) in cases {
            assert_eq!(output_limit(model), limit, "{model}");
        }
    }
}
