//! The client's side of a relayed stream: a response body that reads the
//! upstream itself whenever actix-web asks for more, so an upstream chunk is
//! decoded, shaped and handed to the client's connection in the same poll,
//! with no task or channel in between.
//!
//! It owns the upstream reply, the account's slot (the lease) and the
//! attempt's meter. The stream ends, releasing all three, when the upstream
//! finishes, fails or is silent for the idle timeout; dropping the body
//! (the client went away) cancels the upstream call and frees the slot. A
//! client that stops reading stops the polling: its connection, and with it
//! this body, is dropped after `IFLOW_CLIENT_STALL_TIMEOUT`.

use super::{ReplyFormat, UpstreamBody};
use crate::actors::upstream::Lease;
use crate::error::GatewayError;
use crate::http::meter::Meter;
use crate::openai::sse::{SseDecoder, SseItem};
use crate::openai::stream::EventShaper;
use crate::profile::UpstreamFault;
use actix_web::web::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Upstream data read in one poll before the output is handed on, so a
/// fast upstream cannot make one poll run unbounded.
const BATCH_LIMIT: usize = 32 * 1024;

/// What is read after a finished stream to keep its connection: at most
/// this much, for at most this long.
const DRAIN_LIMIT: usize = 16 * 1024;
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Timing rules of one relayed stream.
pub struct Timing {
    /// Upstream silence after which the stream fails.
    pub idle_timeout: Duration,
    /// Client silence after which a keep-alive comment is sent.
    pub keepalive: Duration,
}

pub struct SseBody<S: UpstreamBody> {
    /// `None` once the upstream ended or was handed to the drain task.
    upstream: Option<S>,
    decoder: SseDecoder,
    shaper: Box<dyn EventShaper>,
    /// Holds the account's slot until the stream ends.
    lease: Option<Lease>,
    /// Booked once, when the stream ends or the body is dropped.
    meter: Option<Meter>,
    account: Arc<str>,
    out: BytesMut,
    timing: Timing,
    /// Wakes for a keep-alive or the idle timeout; re-armed only when it
    /// fires, so a busy stream never touches the timer.
    timer: Pin<Box<Sleep>>,
    last_upstream: Instant,
    last_sent: Instant,
    upstream_ended: bool,
    /// Something reached the client (a client leaving before that is an
    /// unfinished attempt).
    sent_any: bool,
    finished: bool,
    started: Instant,
}

/// What was read before the reply head went out.
pub struct Start {
    pub decoder: SseDecoder,
    pub items: Vec<SseItem>,
    /// The upstream already ended.
    pub ended: bool,
    /// When the upstream was last heard from (its reply head, or the last
    /// bytes read while looking): the idle timeout counts from here.
    pub heard: Instant,
}

impl<S: UpstreamBody> SseBody<S> {
    pub fn new(
        upstream: S,
        lease: Lease,
        format: &ReplyFormat,
        preserve_reasoning: bool,
        timing: Timing,
        meter: Meter,
        start: Start,
    ) -> Self {
        let mut shaper = super::shaper_for(format, lease.profile, preserve_reasoning);
        let account = lease.account_label.clone();
        let now = Instant::now();
        let mut out = BytesMut::new();
        shaper.preamble(&mut out);
        let Start {
            mut decoder,
            items,
            ended,
            heard,
        } = start;
        for item in items {
            shaper.on_item(item, &mut out, &account);
        }
        if ended {
            finish_at_eof(&mut decoder, &mut *shaper, &mut out, &account);
        }
        let first_wake = (now + timing.keepalive).min(heard + timing.idle_timeout);
        Self {
            upstream: Some(upstream),
            decoder,
            shaper,
            lease: Some(lease),
            meter: Some(meter),
            account,
            out,
            timing,
            timer: Box::pin(tokio::time::sleep_until(first_wake)),
            last_upstream: heard,
            last_sent: now,
            upstream_ended: ended,
            sent_any: false,
            finished: false,
            started: now,
        }
    }

    /// Reads what the upstream has ready into `out`; stops at the end of
    /// the stream, when nothing is ready, or after a batch. True when it
    /// stopped for the batch limit with more perhaps ready (no waker set).
    fn read_upstream(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(upstream) = self.upstream.as_mut() else {
            return false;
        };
        let mut read = 0;
        while !self.shaper.is_done() {
            if read >= BATCH_LIMIT {
                return true;
            }
            match upstream.poll_next_unpin(cx) {
                Poll::Pending => return false,
                Poll::Ready(Some(Ok(bytes))) => {
                    self.last_upstream = Instant::now();
                    read += bytes.len();
                    match self.decoder.feed(&bytes) {
                        Ok(()) => {
                            while let Some(item) = self.decoder.next_item() {
                                self.shaper.on_item(item, &mut self.out, &self.account);
                            }
                        }
                        Err(e) => {
                            let fault = UpstreamFault::InvalidResponse(e.to_string());
                            fail(&mut *self.shaper, &mut self.out, &self.account, fault);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let fault = UpstreamFault::StreamInterrupted(e.to_string());
                    fail(&mut *self.shaper, &mut self.out, &self.account, fault);
                }
                Poll::Ready(None) => {
                    self.upstream_ended = true;
                    finish_at_eof(
                        &mut self.decoder,
                        &mut *self.shaper,
                        &mut self.out,
                        &self.account,
                    );
                }
            }
        }
        false
    }

    /// The idle timer fired: fail a silent upstream, keep a quiet client's
    /// connection alive, and arm the timer for the next check.
    fn on_timer(&mut self) {
        let now = Instant::now();
        if now >= self.last_upstream + self.timing.idle_timeout {
            let fault = UpstreamFault::Timeout(self.timing.idle_timeout);
            fail(&mut *self.shaper, &mut self.out, &self.account, fault);
            return;
        }
        if now >= self.last_sent + self.timing.keepalive {
            self.out.extend_from_slice(self.shaper.keepalive());
            self.last_sent = now;
        }
        // Both deadlines are later than now, so the timer cannot spin.
        let next = (self.last_upstream + self.timing.idle_timeout)
            .min(self.last_sent + self.timing.keepalive);
        self.timer.as_mut().reset(next);
    }

    /// The stream is over: free the slot, book the attempt, and let a
    /// finished upstream connection go back to the pool.
    fn end(&mut self, cx: &mut Context<'_>) {
        self.finished = true;
        drop(self.lease.take());
        let clean = self.shaper.error().is_none();
        match self.shaper.error() {
            Some(e) => log::warn!(
                "account {}: stream ended with an error after {} chunks: {e}",
                self.account,
                self.shaper.chunks()
            ),
            None => log::debug!(
                "account {}: stream done, {} chunks in {:?}",
                self.account,
                self.shaper.chunks(),
                self.started.elapsed()
            ),
        }
        if let Some(meter) = self.meter.take() {
            meter.finish(clean, self.shaper.usage());
        }
        let upstream = self.upstream.take();
        if clean
            && !self.upstream_ended
            && let Some(mut upstream) = upstream
        {
            // The end of the body usually came with `[DONE]`: then the
            // connection is back in the pool now, without a task.
            if !matches!(upstream.poll_next_unpin(cx), Poll::Ready(None)) {
                actix_web::rt::spawn(drain(upstream));
            }
        }
    }
}

impl<S: UpstreamBody> Stream for SseBody<S> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            let more = this.read_upstream(cx);
            if more && this.out.is_empty() {
                // A whole batch gave the client nothing (withheld or skipped
                // events): let other connections run, then read on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if this.out.is_empty() && !this.shaper.is_done() {
                match this.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => this.on_timer(),
                }
            }
            if this.shaper.is_done() {
                this.end(cx);
            }
            if !this.out.is_empty() {
                this.last_sent = Instant::now();
                this.sent_any = true;
                return Poll::Ready(Some(Ok(this.out.split().freeze())));
            }
            if this.finished {
                return Poll::Ready(None);
            }
        }
    }
}

impl<S: UpstreamBody> Drop for SseBody<S> {
    /// Dropped before its end: the client went away, or a shutdown cut the
    /// stream off. The upstream reply and the slot go with it; the attempt
    /// is booked as it stood (failed if the client got nothing, or if a
    /// shutdown cut it).
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            log::debug!("account {}: client left the stream", self.account);
            // A stream cut off by a shutdown did not end well for its client.
            let ok =
                self.sent_any && self.shaper.error().is_none() && !crate::shutdown::cutting_off();
            meter.finish(ok, self.shaper.usage());
        }
    }
}

/// Ends the client's stream with the upstream's fault.
fn fail(shaper: &mut dyn EventShaper, out: &mut BytesMut, account: &str, fault: UpstreamFault) {
    shaper.fail(&GatewayError::upstream(account, fault), out);
}

/// The upstream ended: the last unterminated line, then the end. awc reports
/// a chunked body cut off at a chunk boundary as a clean end, so a stream
/// without `[DONE]` is taken as truncated rather than complete.
pub fn finish_at_eof(
    decoder: &mut SseDecoder,
    shaper: &mut dyn EventShaper,
    out: &mut BytesMut,
    account: &str,
) {
    if let Some(item) = decoder.finish() {
        shaper.on_item(item, out, account);
    }
    if !shaper.is_done() {
        let fault = UpstreamFault::StreamInterrupted(
            "the upstream closed the stream before `data: [DONE]`".into(),
        );
        shaper.fail(&GatewayError::upstream(account, fault), out);
    }
    shaper.on_eof(out);
}

/// After `data: [DONE]` only the end of the chunked body is left. Reading it
/// lets the connection go back to the pool; dropping the body unread would
/// close it and make the next request pay for a new TCP connection.
async fn drain<S: UpstreamBody>(mut upstream: S) {
    let mut left = DRAIN_LIMIT;
    let read_rest = async {
        while let Some(Ok(bytes)) = upstream.next().await {
            left = left.saturating_sub(bytes.len());
            if left == 0 {
                break;
            }
        }
    };
    // An upstream that keeps sending after `[DONE]` is simply dropped.
    let _ = tokio::time::timeout(DRAIN_WAIT, read_rest).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::registry::UsageLedger;
    use crate::actors::upstream::{SlotPermit, SlotStats};
    use crate::metrics::Metrics;
    use crate::profile::Profile;
    use crate::store::AuthType;
    use awc::error::PayloadError;
    use futures::stream::{self, BoxStream};
    use tokio::sync::Semaphore;

    type Upstream = BoxStream<'static, Result<Bytes, PayloadError>>;

    const EVENT: &str = r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;

    /// A body over `upstream`, with its slot and ledger to look at.
    struct Rig {
        body: SseBody<Upstream>,
        stats: Arc<SlotStats>,
        ledger: Arc<UsageLedger>,
    }

    fn rig(upstream: Upstream, idle_timeout: Duration, keepalive: Duration) -> Rig {
        rig_heard(upstream, idle_timeout, keepalive, Instant::now())
    }

    /// A rig whose upstream was last heard from at `heard`.
    fn rig_heard(
        upstream: Upstream,
        idle_timeout: Duration,
        keepalive: Duration,
        heard: Instant,
    ) -> Rig {
        let slots = Arc::new(Semaphore::new(1));
        let stats = Arc::new(SlotStats::default());
        let ledger = Arc::new(UsageLedger::default());
        let lease = Lease {
            permit: SlotPermit::try_take(&slots, &stats).expect("a free slot"),
            account_label: Arc::from("acc"),
            profile: Profile::Iflow,
            credentials_auth: AuthType::Iflow,
            url: Arc::from("http://127.0.0.1:9/v1/chat/completions"),
            uri: None,
            headers: Vec::new(),
        };
        let meter = Meter::new(
            Arc::new(Metrics::default()),
            ledger.clone(),
            Arc::from("acc"),
            Arc::from("-"),
            Arc::from("glm-5"),
            std::time::Instant::now(),
            Duration::ZERO,
            None,
        );
        let start = Start {
            decoder: SseDecoder::new(1 << 20),
            items: Vec::new(),
            ended: false,
            heard,
        };
        let format = ReplyFormat::OpenAi { wants_usage: false };
        let timing = Timing {
            idle_timeout,
            keepalive,
        };
        let body = SseBody::new(upstream, lease, &format, true, timing, meter, start);
        Rig {
            body,
            stats,
            ledger,
        }
    }

    fn chunks(parts: Vec<String>) -> Upstream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    /// Everything the client would get, or `None` if the body stalls.
    async fn collect(body: &mut SseBody<Upstream>) -> Option<String> {
        let read_all = async {
            let mut text = String::new();
            while let Some(chunk) = body.next().await {
                text.push_str(std::str::from_utf8(&chunk.expect("no body error")).unwrap());
            }
            text
        };
        tokio::time::timeout(Duration::from_secs(5), read_all)
            .await
            .ok()
    }

    #[actix_rt::test]
    async fn relays_events_then_frees_the_slot_and_books_the_attempt() {
        let upstream = chunks(vec![
            format!("data: {EVENT}\n\ndata: {EVENT}"),
            "\n\ndata: [DONE]\n\n".into(),
        ]);
        let mut r = rig(upstream, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(r.stats.in_flight(), 1);
        let text = collect(&mut r.body).await.expect("the stream ends");
        assert_eq!(
            text,
            format!("data: {EVENT}\n\ndata: {EVENT}\n\ndata: [DONE]\n\n")
        );
        assert_eq!(r.stats.in_flight(), 0, "slot still held after the end");
        let rows = r.ledger.snapshot();
        assert_eq!((rows.len(), rows[0].requests, rows[0].errors), (1, 1, 0));
    }

    /// Records whether it was woken.
    struct Flag(std::sync::atomic::AtomicBool);

    impl futures::task::ArcWake for Flag {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[actix_rt::test]
    async fn a_batch_of_skipped_events_does_not_stall_the_stream() {
        // More than a batch of events the client never sees (not JSON), all
        // ready at once, then a real event. The upstream sets no waker when
        // a batch stops the reading, so a `Pending` answer must come with a
        // wake-up of its own, or nothing would poll the body again.
        let mut parts: Vec<String> = (0..40)
            .map(|i| format!("data: not json {i} {}\n\n", "x".repeat(1000)))
            .collect();
        parts.push(format!("data: {EVENT}\n\ndata: [DONE]\n\n"));
        let mut r = rig(
            chunks(parts),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = futures::task::waker(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut text = String::new();
        for _ in 0..100 {
            match Pin::new(&mut r.body).poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => {
                    text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
                }
                Poll::Ready(None) => break,
                Poll::Pending => assert!(
                    flag.0.swap(false, std::sync::atomic::Ordering::SeqCst),
                    "Pending with the upstream ready and no wake-up: the stream stalls"
                ),
            }
        }
        assert_eq!(text, format!("data: {EVENT}\n\ndata: [DONE]\n\n"));
    }

    #[actix_rt::test]
    async fn a_silent_upstream_gets_keepalives_then_the_idle_timeout() {
        let upstream = stream::iter(vec![Ok(Bytes::from(format!("data: {EVENT}\n\n")))])
            .chain(stream::pending())
            .boxed();
        let mut r = rig(
            upstream,
            Duration::from_millis(400),
            Duration::from_millis(100),
        );
        let text = collect(&mut r.body)
            .await
            .expect("the idle timeout ends it");
        assert!(
            text.starts_with(&format!("data: {EVENT}\n\n: keep-alive\n\n")),
            "{text}"
        );
        assert!(text.contains("\"code\":\"upstream_timeout\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(r.stats.in_flight(), 0);
        assert_eq!(r.ledger.snapshot()[0].errors, 1);
    }

    #[actix_rt::test]
    async fn the_idle_timeout_counts_from_when_the_upstream_was_last_heard() {
        // The relay already waited for a first event that never came: the
        // idle time left is what remains since the reply head arrived.
        let upstream = stream::pending().boxed();
        let idle = Duration::from_secs(3);
        let heard = Instant::now() - Duration::from_millis(2900);
        let mut r = rig_heard(upstream, idle, Duration::from_secs(60), heard);
        let started = Instant::now();
        let text = collect(&mut r.body)
            .await
            .expect("the idle timeout ends it");
        assert!(text.contains("\"code\":\"upstream_timeout\""), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the idle timeout restarted after the first-event wait: {:?}",
            started.elapsed()
        );
    }

    #[actix_rt::test]
    async fn dropping_the_body_frees_the_slot_and_books_the_attempt() {
        let upstream = stream::iter(vec![Ok(Bytes::from(format!("data: {EVENT}\n\n")))])
            .chain(stream::pending())
            .boxed();
        let mut r = rig(upstream, Duration::from_secs(60), Duration::from_secs(60));
        let first = r.body.next().await.expect("a first chunk").unwrap();
        assert_eq!(first, format!("data: {EVENT}\n\n").as_bytes());
        assert_eq!(r.stats.in_flight(), 1);
        drop(r.body);
        assert_eq!(
            r.stats.in_flight(),
            0,
            "the client left but the slot is held"
        );
        assert_eq!(r.ledger.snapshot()[0].requests, 1);
    }

    #[actix_rt::test]
    async fn the_keepalive_comes_one_interval_after_the_last_output() {
        // The first event arrives half an interval after the body was made,
        // so the timer's first firing finds no keep-alive due yet; the next
        // must then come one interval after that event, not two.
        let keepalive = Duration::from_millis(1000);
        let first = stream::once(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Bytes::from(format!("data: {EVENT}\n\n")))
        });
        let upstream = first.chain(stream::pending()).boxed();
        let mut r = rig(upstream, Duration::from_secs(60), keepalive);
        let event = r.body.next().await.expect("the first event").unwrap();
        assert_eq!(event, format!("data: {EVENT}\n\n").as_bytes());
        let sent = std::time::Instant::now();
        let ping = r.body.next().await.expect("a keep-alive").unwrap();
        assert_eq!(ping, ": keep-alive\n\n".as_bytes());
        let silence = sent.elapsed();
        assert!(
            silence < keepalive + Duration::from_millis(350),
            "the client heard nothing for {silence:?} with a {keepalive:?} keep-alive"
        );
    }

    #[actix_rt::test]
    async fn a_finished_stream_reads_the_rest_of_the_upstream_body() {
        // `[DONE]`, then the end of the chunked body comes a little later:
        // the client's stream ends at once, and the rest is still read so
        // the connection can go back to the pool.
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = drained.clone();
        let late_end = stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Bytes::new())
        })
        .chain(stream::poll_fn(move |_| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(None)
        }));
        let upstream = chunks(vec![format!("data: {EVENT}\n\ndata: [DONE]\n\n")])
            .chain(late_end)
            .boxed();
        let mut r = rig(upstream, Duration::from_secs(60), Duration::from_secs(60));
        let text = collect(&mut r.body).await.expect("the stream ends");
        assert_eq!(text, format!("data: {EVENT}\n\ndata: [DONE]\n\n"));
        assert!(!drained.load(std::sync::atomic::Ordering::SeqCst));
        for _ in 0..300 {
            if drained.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the upstream body was not read to its end after [DONE]");
    }

    #[actix_rt::test]
    async fn a_client_leaving_before_any_byte_is_booked_as_a_failure() {
        let mut r = rig(
            stream::pending().boxed(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let nothing = tokio::time::timeout(Duration::from_millis(50), r.body.next()).await;
        assert!(nothing.is_err(), "a silent upstream produced output");
        drop(r.body);
        let rows = r.ledger.snapshot();
        assert_eq!((rows[0].requests, rows[0].errors), (1, 1));
        assert_eq!(r.stats.in_flight(), 0);
    }
}
