//! Reads a login of the official iFlow CLI (protocol section 8.8):
//! `settings.json` plus its siblings `oauth_creds.json` and
//! `iflow_accounts.json`, under `$IFLOW_HOME` or `~/.iflow`.

use super::TokenSet;
use crate::secret::Secret;
use crate::store::{AuthType, DEFAULT_IFLOW_BASE_URL};
use chrono::{TimeZone, Utc};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What an import found.
#[derive(Debug, Clone, PartialEq)]
pub struct OfficialLogin {
    pub api_key: Secret,
    pub base_url: String,
    pub auth_type: AuthType,
    pub tokens: Option<TokenSet>,
    /// Things the user should know (a fallback that was taken).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is not valid JSON: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{0}")]
    NoKey(String),
}

/// `$IFLOW_HOME/settings.json`, else `~/.iflow/settings.json`.
pub fn default_settings_path() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("IFLOW_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home).join("settings.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".iflow").join("settings.json"))
}

/// Reads the official CLI's files; `path` is `settings.json` or its folder.
pub fn read(path: &Path) -> Result<OfficialLogin, ImportError> {
    let settings_path = if path.is_dir() {
        path.join("settings.json")
    } else {
        path.to_path_buf()
    };
    let dir = settings_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let settings = read_object(&settings_path)?.ok_or_else(|| ImportError::Read {
        path: settings_path.clone(),
        reason: "no such file".into(),
    })?;
    let creds = read_object(&dir.join("oauth_creds.json"))?;
    let accounts = read_object(&dir.join("iflow_accounts.json"))?;

    let text = |obj: Option<&Map<String, Value>>, key: &str| {
        obj.and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut notes = Vec::new();
    let tokens = creds.as_ref().and_then(tokens_of);
    if creds.is_some() && tokens.is_none() {
        notes.push(
            "oauth_creds.json lacks access_token, refresh_token or expiry_date; imported the key only"
                .to_string(),
        );
    }
    let selected = text(Some(&settings), "selectedAuthType");
    let oauth = tokens.is_some() && selected.as_deref() != Some("iflow");
    if selected.as_deref() == Some("oauth-iflow") && tokens.is_none() {
        notes.push("settings.json says oauth-iflow but there is no usable OAuth login".to_string());
    }

    // The official client's key lookup: the cached key of an OAuth login
    // first, the settings key for a plain-key login.
    let cached = [
        text(accounts.as_ref(), "iflowApiKey"),
        text(creds.as_ref(), "apiKey"),
    ];
    let configured = [
        text(Some(&settings), "apiKey"),
        text(Some(&settings), "searchApiKey"),
    ];
    let order: Vec<Option<String>> = if oauth {
        cached.into_iter().chain(configured).collect()
    } else {
        configured.into_iter().chain(cached).collect()
    };
    let api_key = order.into_iter().flatten().next().ok_or_else(|| {
        ImportError::NoKey(format!(
            "no API key found in {} or its sibling files",
            settings_path.display()
        ))
    })?;
    if !api_key.starts_with("sk-") {
        return Err(ImportError::NoKey(format!(
            "the key in {} is not an API key (sk-…); log in with `iflow-actix token login` instead",
            settings_path.display()
        )));
    }
    let base_url = match (oauth, text(Some(&settings), "baseUrl")) {
        (false, Some(url)) => url.trim_end_matches('/').to_string(),
        _ => DEFAULT_IFLOW_BASE_URL.to_string(),
    };
    Ok(OfficialLogin {
        api_key: Secret::new(api_key),
        base_url,
        auth_type: if oauth {
            AuthType::OAuthIflow
        } else {
            AuthType::Iflow
        },
        tokens: if oauth { tokens } else { None },
        notes,
    })
}

/// A valid OAuth login has all three of access token, refresh token and
/// expiry (the official client's own test).
fn tokens_of(creds: &Map<String, Value>) -> Option<TokenSet> {
    let access = creds
        .get("access_token")?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let refresh = creds
        .get("refresh_token")?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let expiry_ms = match creds.get("expiry_date")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some(TokenSet {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(refresh)),
        expires_at: Utc.timestamp_millis_opt(expiry_ms).single(),
    })
}

/// `Ok(None)` when the file does not exist.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>, ImportError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ImportError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(ImportError::Malformed {
            path: path.to_path_buf(),
            reason: "expected a JSON object".into(),
        }),
        Err(e) => Err(ImportError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
