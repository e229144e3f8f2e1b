//! What went wrong upstream, in terms a client can act on. The HTTP status,
//! type and code each fault becomes are decided in one place: `crate::error`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFault {
    #[error("could not connect to the upstream: {0}")]
    Unreachable(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream rejected the account's credentials (HTTP {status}): {message}")]
    AuthRejected { status: u16, message: String },
    #[error("the account's API key has expired: {0}")]
    KeyExpired(String),
    #[error("the account's API key is invalid or blocked: {0}")]
    KeyInvalid(String),
    #[error("the upstream rate limit was hit: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<String>,
    },
    #[error("the account's upstream concurrency limit was hit: {0}")]
    ConcurrencyLimit(String),
    #[error("the input exceeds the model's context limit: {0}")]
    ContextTooLong(String),
    #[error("the model is not supported upstream: {0}")]
    ModelNotSupported(String),
    #[error("the upstream model failed: {0}")]
    ModelError(String),
    #[error("the upstream rejected the request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("the upstream failed (HTTP {status}): {message}")]
    ServerError { status: u16, message: String },
    #[error("the upstream sent an invalid response: {0}")]
    InvalidResponse(String),
    #[error("the upstream stream broke off: {0}")]
    StreamInterrupted(String),
}

impl UpstreamFault {
    /// Faults that say the account's key is bad, so refreshing may help.
    pub fn is_key_problem(&self) -> bool {
        matches!(
            self,
            UpstreamFault::KeyExpired(_)
                | UpstreamFault::KeyInvalid(_)
                | UpstreamFault::AuthRejected { .. }
        )
    }
}
