//! Calls to the iFlow OAuth endpoints: code exchange, refresh, user info.
//! Reply parsing is separate from the HTTP calls so it can be tested alone.

use super::{CLIENT_ID, CLIENT_SECRET, OAuthEndpoints, OAuthError, TokenSet, UserInfo};
use crate::config::MaybeProxy;
use crate::secret::Secret;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

pub struct OAuthClient {
    http: awc::Client,
    endpoints: OAuthEndpoints,
}

/// `Basic base64(client_id:client_secret)`, as the official client sends it.
pub fn basic_authorization() -> String {
    let raw = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

impl OAuthClient {
    /// Must run inside an actix system (awc is per thread). Goes through
    /// the upstream proxy, like chat calls.
    pub fn new(endpoints: OAuthEndpoints, proxy: &MaybeProxy) -> Self {
        let http = crate::http::client::build_with(
            Duration::from_secs(15),
            Duration::from_secs(30),
            proxy,
        );
        Self { http, endpoints }
    }

    pub fn endpoints(&self) -> &OAuthEndpoints {
        &self.endpoints
    }

    /// The browser URL of protocol section 8.2.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("loginMethod", "phone")
            .append_pair("type", "phone")
            .append_pair("redirect", redirect_uri)
            .append_pair("state", state)
            .append_pair("client_id", CLIENT_ID)
            .finish();
        format!("{}?{query}", self.endpoints.authorize_url)
    }

    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, OAuthError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenSet, OAuthError> {
        let mut resp = self
            .http
            .post(&self.endpoints.token_url)
            .insert_header(("authorization", basic_authorization()))
            .insert_header(("accept", "application/json"))
            .send_form(&form)
            .await
            .map_err(|e| OAuthError::Transient(format!("token endpoint unreachable: {e}")))?;
        let body = resp
            .body()
            .limit(1 << 20)
            .await
            .map_err(|e| OAuthError::Transient(format!("token reply broken: {e}")))?;
        parse_token_reply(resp.status().as_u16(), &body, Utc::now())
    }

    /// User info with the official client's retries: three tries, waiting
    /// 1 s then 2 s after a server or network error.
    pub async fn user_info(&self, access_token: &Secret) -> Result<UserInfo, OAuthError> {
        let mut last = OAuthError::Transient("no attempt made".into());
        for attempt in 0..3u64 {
            match self.user_info_once(access_token).await {
                Ok(info) => return Ok(info),
                Err(UserInfoError::Fatal(e)) => return Err(e),
                Err(UserInfoError::Retry(e)) => last = e,
                Err(UserInfoError::RetryAfterWait(e)) => {
                    last = e;
                    if attempt < 2 {
                        actix_web::rt::time::sleep(Duration::from_secs(attempt + 1)).await;
                    }
                }
            }
        }
        Err(last)
    }

    async fn user_info_once(&self, access_token: &Secret) -> Result<UserInfo, UserInfoError> {
        let mut resp = self
            .http
            .get(&self.endpoints.userinfo_url)
            .query(&[("accessToken", access_token.expose())])
            .map_err(|e| {
                UserInfoError::Fatal(OAuthError::Rejected(format!("bad user-info URL: {e}")))
            })?
            .insert_header(("user-agent", "node"))
            .insert_header(("accept", "*/*"))
            .send()
            .await
            .map_err(|e| {
                UserInfoError::RetryAfterWait(OAuthError::Transient(format!(
                    "user-info endpoint unreachable: {e}"
                )))
            })?;
        let body = resp.body().limit(1 << 20).await.map_err(|e| {
            UserInfoError::RetryAfterWait(OAuthError::Transient(format!(
                "user-info reply broken: {e}"
            )))
        })?;
        parse_user_info(resp.status().as_u16(), &body)
    }
}

/// How a failed user-info attempt should be followed up.
#[derive(Debug, PartialEq)]
pub enum UserInfoError {
    /// `success:false`: the official client retries at once.
    Retry(OAuthError),
    /// 5xx, 408, 429 or a network error: retry after a wait.
    RetryAfterWait(OAuthError),
    /// Not worth retrying.
    Fatal(OAuthError),
}

fn message_of(v: &Value) -> String {
    ["error_description", "message", "msg", "error"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("no message")
        .to_string()
}

fn busy(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    message.contains("太多") || m.contains("too many") || m.contains("busy")
}

/// Reads a token-endpoint reply (protocol 8.3).
pub fn parse_token_reply(
    status: u16,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<TokenSet, OAuthError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    };
    if !(200..300).contains(&status) {
        let message = json.as_ref().map(message_of).unwrap_or_else(text);
        let code = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(match status {
            _ if code == "invalid_grant" || message.contains("invalid_grant") => {
                OAuthError::InvalidGrant(message)
            }
            408 | 429 | 500..=599 => OAuthError::Transient(format!("HTTP {status}: {message}")),
            _ => OAuthError::Rejected(format!("HTTP {status}: {message}")),
        });
    }
    let json =
        json.ok_or_else(|| OAuthError::Transient(format!("reply is not JSON: {}", text())))?;
    if json.get("success").and_then(Value::as_bool) == Some(false) {
        let message = message_of(&json);
        return Err(if message.contains("invalid_grant") {
            OAuthError::InvalidGrant(message)
        } else if busy(&message) {
            OAuthError::Transient(format!("server busy: {message}"))
        } else {
            OAuthError::Transient(message)
        });
    }
    let token = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    };
    let access_token = token("access_token")
        .ok_or_else(|| OAuthError::Rejected("reply has no access_token".into()))?;
    let expires_in = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(TokenSet {
        access_token,
        refresh_token: token("refresh_token"),
        // A nonsensical lifetime (negative, or beyond chrono's range) is
        // treated as unknown rather than trusted or allowed to panic.
        expires_at: expires_in
            .filter(|s| *s > 0)
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|d| now.checked_add_signed(d)),
    })
}

/// Reads a user-info reply (protocol 8.5).
pub fn parse_user_info(status: u16, body: &[u8]) -> Result<UserInfo, UserInfoError> {
    if matches!(status, 408 | 429 | 500..=599) {
        return Err(UserInfoError::RetryAfterWait(OAuthError::Transient(
            format!("user info: HTTP {status}"),
        )));
    }
    if !(200..300).contains(&status) {
        return Err(UserInfoError::Fatal(OAuthError::Rejected(format!(
            "user info: HTTP {status}"
        ))));
    }
    let json: Value = serde_json::from_slice(body).map_err(|_| {
        UserInfoError::Retry(OAuthError::Transient("user info reply is not JSON".into()))
    })?;
    if json.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(UserInfoError::Retry(OAuthError::Transient(format!(
            "user info: {}",
            message_of(&json)
        ))));
    }
    let data = json.get("data").cloned().unwrap_or(Value::Null);
    let api_key = data
        .get("apiKey")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(UserInfo {
        api_key: Secret::new(api_key),
        user_name: data
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests;
