//! The process-wide shutdown state: set once SIGTERM or SIGINT arrives, so
//! that work which would otherwise wait past the grace period ends now.
//!
//! - Requests waiting in an account's or the pool's queue get 503 at once
//!   (a slot freed during the grace period is not worth holding a client
//!   for; the connection would be cut at its end anyway).
//! - A request still running when the grace period ends is cut off: a
//!   stream is then booked as an error, and the access log says 503 where
//!   a client that left says 499.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

static STARTED: AtomicBool = AtomicBool::new(false);
static SIGNALLED: Notify = Notify::const_new();
/// When the grace period ends and the workers drop what still runs.
static CUT_OFF_AT: OnceLock<Instant> = OnceLock::new();

/// The shutdown has begun, with `grace` for requests in flight: wake
/// everything waiting in [`signalled`].
pub fn begin(grace: Duration) {
    let _ = CUT_OFF_AT.set(Instant::now() + grace);
    STARTED.store(true, Ordering::SeqCst);
    SIGNALLED.notify_waiters();
}

pub fn started() -> bool {
    STARTED.load(Ordering::SeqCst)
}

/// Whether work dropped now is being cut off by the shutdown (the grace
/// period is over), rather than left by its client. A little early counts:
/// the workers' own clock may run a few milliseconds ahead.
pub fn cutting_off() -> bool {
    CUT_OFF_AT
        .get()
        .is_some_and(|at| Instant::now() + Duration::from_millis(100) >= *at)
}

/// Resolves once the shutdown has begun (at once if it already has).
pub async fn signalled() {
    let notified = SIGNALLED.notified();
    tokio::pin!(notified);
    // Registered before the check, so a `begin` in between is not missed.
    notified.as_mut().enable();
    if started() {
        return;
    }
    notified.await;
}

/// The error for a request that would have to wait during the shutdown.
pub fn refusal() -> crate::error::GatewayError {
    crate::error::GatewayError::Unavailable(
        "the server is shutting down: send the request again (to another instance)".into(),
    )
}
