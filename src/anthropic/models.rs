//! Which iFlow model a `claude-*` name means. Configurable with
//! `IFLOW_ANTHROPIC_MODEL_MAP` (`pattern=model,…`, a trailing `*` matches a
//! prefix, first match wins); names that match nothing pass through.

/// The documented default: Claude Code's sonnet/opus/haiku tiers onto the
/// strongest iFlow coding models.
pub const DEFAULT_MAP: &str =
    "claude-opus-*=glm-5,claude-sonnet-*=glm-5,claude-haiku-*=qwen3-coder-plus,claude-*=glm-5";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMap(Vec<(String, String)>);

impl ModelMap {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (pattern, model) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not pattern=model"))?;
            let (pattern, model) = (pattern.trim(), model.trim());
            if pattern.is_empty() || model.is_empty() {
                return Err(format!("{part:?} has an empty side"));
            }
            if model.contains('=') {
                return Err(format!("{part:?} has more than one ="));
            }
            rules.push((pattern.to_string(), model.to_string()));
        }
        Ok(Self(rules))
    }

    /// The upstream model for a client's model name.
    pub fn resolve<'a>(&'a self, model: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => pattern == model,
            })
            .map_or(model, |(_, target)| target.as_str())
    }
}

impl Default for ModelMap {
    fn default() -> Self {
        Self::parse(DEFAULT_MAP).unwrap_or(Self(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map() {
        let m = ModelMap::default();
        assert_eq!(m.resolve("claude-sonnet-4-5-20250929"), "glm-5");
        assert_eq!(m.resolve("claude-haiku-4-5"), "qwen3-coder-plus");
        assert_eq!(m.resolve("claude-3-7-sonnet-latest"), "glm-5");
        assert_eq!(m.resolve("kimi-k2.5"), "kimi-k2.5");
    }

    #[test]
    fn custom_map_and_errors() {
        let m =
            ModelMap::parse("claude-opus-4-1=kimi-k2.5, claude-*=qwen3-coder-plus").expect("map");
        assert_eq!(m.resolve("claude-opus-4-1"), "kimi-k2.5");
        assert_eq!(m.resolve("claude-opus-4"), "qwen3-coder-plus");
        assert!(ModelMap::parse("claude-*").is_err());
        assert!(ModelMap::parse("=glm-5").is_err());
        assert!(ModelMap::parse("a=b=c").is_err());
    }
}
