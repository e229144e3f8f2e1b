//! The process-wide shutdown state: set once SIGTERM or SIGINT arrives, so
//! that work which would otherwise wait past the grace period ends now.
//!
//! - Requests waiting in an account's or the pool's queue get 503 at once
//!   (a slot freed during the grace period is not worth holding a client
//!   for; the connection would be cut at its end anyway).
//! - A stream cut off by the shutdown is booked as an error.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

static STARTED: AtomicBool = AtomicBool::new(false);
static SIGNALLED: Notify = Notify::const_new();

/// The shutdown has begun: wake everything waiting in [`signalled`].
pub fn begin() {
    STARTED.store(true, Ordering::SeqCst);
    SIGNALLED.notify_waiters();
}

pub fn started() -> bool {
    STARTED.load(Ordering::SeqCst)
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
