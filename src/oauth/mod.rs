//! iFlow OAuth (protocol section 8): the login flow, token exchange and
//! refresh, the user-info call that carries the API key, and import of the
//! official CLI's files.

pub mod client;
pub mod login;
pub mod official_files;

use crate::secret::Secret;
use chrono::{DateTime, Utc};

pub const CLIENT_ID: &str = "10009311001";
pub const CLIENT_SECRET: &str = "4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW";

pub const DEFAULT_AUTHORIZE_URL: &str = "https://iflow.cn/oauth";
pub const DEFAULT_TOKEN_URL: &str = "https://iflow.cn/oauth/token";
pub const DEFAULT_USERINFO_URL: &str = "https://iflow.cn/api/oauth/getUserInfo";

/// Where the OAuth endpoints are (overridable for mirrors and tests).
#[derive(Debug, Clone, clap::Args)]
pub struct OAuthEndpoints {
    /// Browser authorisation page.
    #[arg(long, global = true, env = "IFLOW_OAUTH_AUTHORIZE_URL", value_parser = crate::config::parse_with("IFLOW_OAUTH_AUTHORIZE_URL", crate::config::http_url), default_value = DEFAULT_AUTHORIZE_URL)]
    pub authorize_url: String,
    /// Token endpoint (code exchange and refresh).
    #[arg(long, global = true, env = "IFLOW_OAUTH_TOKEN_URL", value_parser = crate::config::parse_with("IFLOW_OAUTH_TOKEN_URL", crate::config::http_url), default_value = DEFAULT_TOKEN_URL)]
    pub token_url: String,
    /// User-info endpoint that returns the API key.
    #[arg(long, global = true, env = "IFLOW_OAUTH_USERINFO_URL", value_parser = crate::config::parse_with("IFLOW_OAUTH_USERINFO_URL", crate::config::http_url), default_value = DEFAULT_USERINFO_URL)]
    pub userinfo_url: String,
}

impl OAuthEndpoints {
    /// The landing pages live under the authorisation page, as on iflow.cn.
    pub fn page(&self, name: &str) -> String {
        format!("{}/{name}", self.authorize_url.trim_end_matches('/'))
    }
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSet {
    pub access_token: Secret,
    /// Absent when the server keeps the old refresh token.
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the user-info call returns that we keep.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub api_key: Secret,
    pub user_name: Option<String>,
}

/// Why an OAuth call failed, sorted by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The refresh token (or code) is dead: the user must log in again.
    #[error("the login is no longer valid ({0}); run `iflow-actix token login` again")]
    InvalidGrant(String),
    /// Busy, network trouble, 5xx: try again later.
    #[error("iFlow OAuth is temporarily unavailable: {0}")]
    Transient(String),
    /// Anything else the server refused.
    #[error("iFlow OAuth refused the request: {0}")]
    Rejected(String),
}

impl OAuthError {
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Transient(_))
    }
}
