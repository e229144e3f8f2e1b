//! Measures one upstream attempt and books it: latency histograms, tokens,
//! and the usage ledger. Created per attempt, finished exactly once (by the
//! relay when the reply or stream ends, or by the dispatcher when sending
//! failed). A meter dropped unfinished (the client left, or a shutdown cut
//! the request off, while the call was under way: connecting, sending or
//! reading the reply) books a failed attempt. It also holds the gateway key's concurrency permit, so the key's
//! slot lasts as long as the request.

use crate::actors::registry::{UsageEvent, UsageLedger};
use crate::metrics::Metrics;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

pub struct Meter {
    pub metrics: Arc<Metrics>,
    pub ledger: Arc<UsageLedger>,
    pub account: Arc<str>,
    /// Gateway key id, or `-` for a request pinned to an account.
    pub key: Arc<str>,
    pub model: Arc<str>,
    /// When the client's request arrived.
    pub received: Instant,
    pub queue_wait: Duration,
    sent: Option<Instant>,
    head: Option<Duration>,
    pub key_permit: Option<Arc<OwnedSemaphorePermit>>,
    finished: bool,
}

impl Meter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        ledger: Arc<UsageLedger>,
        account: Arc<str>,
        key: Arc<str>,
        model: Arc<str>,
        received: Instant,
        queue_wait: Duration,
        key_permit: Option<Arc<OwnedSemaphorePermit>>,
    ) -> Self {
        metrics.queue_wait.observe(queue_wait);
        ledger.open();
        Self {
            metrics,
            ledger,
            account,
            key,
            model,
            received,
            queue_wait,
            sent: None,
            head: None,
            key_permit,
            finished: false,
        }
    }

    /// The upstream request is being sent now.
    pub fn sent(&mut self) {
        self.sent = Some(Instant::now());
    }

    /// The upstream reply head has arrived.
    pub fn head(&mut self) {
        if let Some(sent) = self.sent {
            let ttfb = sent.elapsed();
            self.head = Some(ttfb);
            self.metrics.upstream_ttfb.observe(ttfb);
        }
    }

    /// Books the attempt; `usage` is the upstream's usage object, if any.
    pub fn finish(mut self, ok: bool, usage: Option<&Value>) {
        self.book(ok, usage);
    }

    fn book(&mut self, ok: bool, usage: Option<&Value>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let upstream = self.sent.map(|s| s.elapsed()).unwrap_or_default();
        if self.sent.is_some() {
            self.metrics.upstream_latency.observe(upstream);
        }
        let total = self.received.elapsed();
        self.metrics.gateway_overhead.observe(
            total
                .saturating_sub(upstream)
                .saturating_sub(self.queue_wait),
        );
        let count = |k: &str| {
            usage
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
        if usage.is_some() {
            self.metrics.tokens(&self.model, prompt, completion);
        }
        self.ledger.record(&UsageEvent {
            account: &self.account,
            key: &self.key,
            model: &self.model,
            ok,
            prompt_tokens: prompt,
            completion_tokens: completion,
        });
        self.ledger.close();
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.book(false, None);
    }
}
