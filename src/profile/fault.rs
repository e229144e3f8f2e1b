//! What went wrong upstream, in terms a client can act on. The HTTP status,
//! type and code each fault becomes are decided in one place: `crate::error`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFault {
    #[error("the upstream connection failed: {0}")]
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
    #[error("the input exceeds the model's maximum context length: {0}")]
    ContextTooLong(String),
    #[error("the model is not supported upstream: {0}")]
    ModelNotSupported(String),
    #[error("the upstream model failed: {0}")]
    ModelError(String),
    #[error("the upstream rejected the request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("{}", server_failure(*status, message))]
    ServerError { status: u16, message: String },
    #[error("the upstream sent an invalid response: {0}")]
    InvalidResponse(String),
    #[error("the upstream stream broke off: {0}")]
    StreamInterrupted(String),
}

/// A failure reported in a successful reply (an error body or stream event)
/// is not an HTTP failure: its status is left out of the message.
fn server_failure(status: u16, message: &str) -> String {
    if (200..300).contains(&status) {
        format!("the upstream reported an error: {message}")
    } else {
        format!("the upstream failed (HTTP {status}): {message}")
    }
}

impl UpstreamFault {
    /// The same fault with any API key in its upstream text masked.
    pub fn redacted(self) -> Self {
        use crate::secret::redact_keys as r;
        use UpstreamFault as F;
        match self {
            F::Unreachable(m) => F::Unreachable(r(&m)),
            F::Timeout(d) => F::Timeout(d),
            F::AuthRejected { status, message } => F::AuthRejected {
                status,
                message: r(&message),
            },
            F::KeyExpired(m) => F::KeyExpired(r(&m)),
            F::KeyInvalid(m) => F::KeyInvalid(r(&m)),
            F::RateLimited {
                message,
                retry_after,
            } => F::RateLimited {
                message: r(&message),
                retry_after,
            },
            F::ConcurrencyLimit(m) => F::ConcurrencyLimit(r(&m)),
            F::ContextTooLong(m) => F::ContextTooLong(r(&m)),
            F::ModelNotSupported(m) => F::ModelNotSupported(r(&m)),
            F::ModelError(m) => F::ModelError(r(&m)),
            F::BadRequest { status, message } => F::BadRequest {
                status,
                message: r(&message),
            },
            F::ServerError { status, message } => F::ServerError {
                status,
                message: r(&message),
            },
            F::InvalidResponse(m) => F::InvalidResponse(r(&m)),
            F::StreamInterrupted(m) => F::StreamInterrupted(r(&m)),
        }
    }
}

/// What a fault says about the account that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request itself is the problem; the account is fine.
    RequestLevel,
    /// Rate limit or upstream trouble: rest the account, maybe this long.
    CoolDown(Option<Duration>),
    /// The key is refused or blocked: keep the account out until it changes.
    Quarantine,
    /// The key expired: refresh it.
    KeyExpired,
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&chrono::Utc) - now).to_std().ok()
}

impl UpstreamFault {
    /// Sorts the fault for failover and cooldown.
    pub fn verdict(&self) -> Verdict {
        match self {
            // `Retry-After: 0` (or a date gone by) asks for no rest at all;
            // the account still gets the backoff, as without the header.
            UpstreamFault::RateLimited { retry_after, .. } => Verdict::CoolDown(
                retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
                    .filter(|d| !d.is_zero()),
            ),
            UpstreamFault::ConcurrencyLimit(_)
            | UpstreamFault::Unreachable(_)
            | UpstreamFault::Timeout(_) => Verdict::CoolDown(None),
            UpstreamFault::ServerError { status, .. }
                if *status >= 500 || (200..300).contains(status) =>
            {
                Verdict::CoolDown(None)
            }
            UpstreamFault::KeyInvalid(_) | UpstreamFault::AuthRejected { .. } => {
                Verdict::Quarantine
            }
            UpstreamFault::KeyExpired(_) => Verdict::KeyExpired,
            _ => Verdict::RequestLevel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_in_a_successful_reply_is_not_called_an_http_failure() {
        let fault = |status| UpstreamFault::ServerError {
            status,
            message: "boom".into(),
        };
        assert_eq!(
            fault(200).to_string(),
            "the upstream reported an error: boom"
        );
        assert_eq!(
            fault(502).to_string(),
            "the upstream failed (HTTP 502): boom"
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_zero_retry_after_still_rests_the_account_with_the_backoff() {
        let limited = |v: &str| UpstreamFault::RateLimited {
            message: String::new(),
            retry_after: Some(v.into()),
        };
        assert_eq!(limited("0").verdict(), Verdict::CoolDown(None));
        assert_eq!(
            limited("4").verdict(),
            Verdict::CoolDown(Some(Duration::from_secs(4)))
        );
    }

    #[test]
    fn verdicts() {
        let limited = UpstreamFault::RateLimited {
            message: String::new(),
            retry_after: Some("3".into()),
        };
        assert_eq!(
            limited.verdict(),
            Verdict::CoolDown(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            UpstreamFault::KeyInvalid(String::new()).verdict(),
            Verdict::Quarantine
        );
        assert_eq!(
            UpstreamFault::KeyExpired(String::new()).verdict(),
            Verdict::KeyExpired
        );
        assert_eq!(
            UpstreamFault::ContextTooLong(String::new()).verdict(),
            Verdict::RequestLevel
        );
        assert_eq!(
            UpstreamFault::ServerError {
                status: 503,
                message: String::new()
            }
            .verdict(),
            Verdict::CoolDown(None)
        );
    }
}
