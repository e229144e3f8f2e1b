//! Prometheus metrics, kept in atomics and small maps and rendered in the
//! text exposition format on `GET /metrics`. Gauges that mirror live state
//! (in-flight, account states) are read from the directory at scrape time.

use crate::actors::registry::Directory;
use chrono::Utc;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds, in seconds, shared by every histogram.
const BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Distinct model names kept as label values; the rest become `other`, so a
/// client cannot blow up the number of series.
const MAX_MODELS: usize = 64;

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

type Label = Arc<str>;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<(u16, Label, Label), u64>>,
    models: Mutex<HashSet<Label>>,
    tokens: Mutex<HashMap<(Label, &'static str), u64>>,
    refreshes: Mutex<BTreeMap<&'static str, u64>>,
    cooldowns: Mutex<BTreeMap<&'static str, u64>>,
    failovers: AtomicU64,
    pub upstream_ttfb: Histogram,
    pub upstream_latency: Histogram,
    pub gateway_overhead: Histogram,
    pub queue_wait: Histogram,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, by: u64) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let n = map.entry(key).or_insert(0);
    *n = n.saturating_add(by);
}

/// Counts into a hash map whose keys share their strings (no allocation
/// once a key exists).
fn bump_hashed<K: Eq + std::hash::Hash>(map: &Mutex<HashMap<K, u64>>, key: K, by: u64) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let n = map.entry(key).or_insert(0);
    *n = n.saturating_add(by);
}

/// A map's entries, sorted, for stable output.
fn sorted<K: Ord + Clone>(map: &Mutex<HashMap<K, u64>>) -> Vec<(K, u64)> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let mut entries: Vec<(K, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    entries.sort();
    entries
}

fn dash() -> Label {
    static DASH: std::sync::OnceLock<Label> = std::sync::OnceLock::new();
    DASH.get_or_init(|| Arc::from("-")).clone()
}

/// Escapes a label value for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The label value to use for a client-chosen model name (interned).
    pub fn model_label(&self, model: &str) -> Label {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = models.get(model) {
            return known.clone();
        }
        if models.len() < MAX_MODELS && !model.is_empty() && model.len() <= 128 {
            let label: Label = Arc::from(model);
            models.insert(label.clone());
            return label;
        }
        Arc::from("other")
    }

    pub fn request(&self, status: u16, model: Option<&Label>, account: Option<&Label>) {
        let model = match model {
            Some(m) if !m.is_empty() => self.model_label(m),
            _ => dash(),
        };
        let account = account.cloned().unwrap_or_else(dash);
        bump_hashed(&self.requests, (status, model, account), 1);
    }

    pub fn tokens(&self, model: &str, prompt: u64, completion: u64) {
        let model = self.model_label(model);
        bump_hashed(&self.tokens, (model.clone(), "prompt"), prompt);
        bump_hashed(&self.tokens, (model, "completion"), completion);
    }

    pub fn refresh(&self, outcome: &'static str) {
        bump(&self.refreshes, outcome, 1);
    }

    pub fn cooldown(&self, reason: &'static str) {
        bump(&self.cooldowns, reason, 1);
    }

    pub fn failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition.
    pub fn render(&self, directory: &Directory) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP iflow_requests_total Client requests by status, model and account.\n# TYPE iflow_requests_total counter\n");
        for ((status, model, account), n) in sorted(&self.requests) {
            let _ = writeln!(
                out,
                "iflow_requests_total{{status=\"{status}\",model=\"{}\",account=\"{}\"}} {n}",
                label(&model),
                label(&account)
            );
        }
        out.push_str("# HELP iflow_tokens_total Tokens reported by the upstream.\n# TYPE iflow_tokens_total counter\n");
        for ((model, kind), n) in sorted(&self.tokens) {
            let _ = writeln!(
                out,
                "iflow_tokens_total{{model=\"{}\",kind=\"{kind}\"}} {n}",
                label(&model)
            );
        }
        self.upstream_ttfb.render(
            &mut out,
            "iflow_upstream_ttfb_seconds",
            "Time from sending to the upstream reply head.",
        );
        self.upstream_latency.render(
            &mut out,
            "iflow_upstream_latency_seconds",
            "Time from sending to the end of the upstream reply.",
        );
        self.gateway_overhead.render(
            &mut out,
            "iflow_gateway_overhead_seconds",
            "Request time not spent upstream or queued.",
        );
        self.queue_wait.render(
            &mut out,
            "iflow_queue_wait_seconds",
            "Time spent waiting for an account slot.",
        );
        out.push_str("# HELP iflow_account_in_flight Upstream calls in flight per account.\n# TYPE iflow_account_in_flight gauge\n");
        for h in directory.handles() {
            let _ = writeln!(
                out,
                "iflow_account_in_flight{{account=\"{}\"}} {}",
                label(&h.label),
                h.stats.in_flight()
            );
        }
        out.push_str("# HELP iflow_account_state Account state (1 for the current one).\n# TYPE iflow_account_state gauge\n");
        let now = Utc::now();
        for h in directory.handles() {
            let current = h.health.label(now);
            for state in ["active", "cooldown", "key-invalid", "needs-login"] {
                let _ = writeln!(
                    out,
                    "iflow_account_state{{account=\"{}\",state=\"{state}\"}} {}",
                    label(&h.label),
                    u8::from(state == current)
                );
            }
        }
        out.push_str("# HELP iflow_refresh_total OAuth refresh attempts by outcome.\n# TYPE iflow_refresh_total counter\n");
        for (outcome, n) in self
            .refreshes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "iflow_refresh_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP iflow_cooldowns_total Accounts put to rest, by reason.\n# TYPE iflow_cooldowns_total counter\n");
        for (reason, n) in self
            .cooldowns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "iflow_cooldowns_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP iflow_failovers_total Requests moved to another account before any byte was sent.\n# TYPE iflow_failovers_total counter\niflow_failovers_total {}",
            self.failovers.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(1000));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.025\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"300\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn model_labels_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_MODELS {
            assert_eq!(&*m.model_label(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(&*m.model_label("one-too-many"), "other");
        assert_eq!(&*m.model_label("m3"), "m3");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
