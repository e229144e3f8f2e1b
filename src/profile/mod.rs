//! Upstream profiles: how requests for one kind of account are addressed,
//! signed, rewritten and how their error replies are read. Handlers and
//! actors only talk to [`Profile`]; adding a provider means adding a variant.

pub mod fault;
pub(crate) mod fields;
pub mod iflow;
mod openai;

pub use fault::{UpstreamFault, Verdict};

use crate::secret::Secret;
use crate::store::AuthType;
use serde_json::{Map, Value};

/// An account's upstream credentials, as the per-account actor holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub api_key: Secret,
    pub base_url: String,
    pub auth_type: AuthType,
}

/// Per-account ids the iFlow profile keeps: one session for the process, one
/// conversation per user prompt.
#[derive(Debug, Clone)]
pub struct SessionIds {
    pub session_id: String,
    pub conversation_id: String,
}

impl SessionIds {
    pub fn new() -> Self {
        Self {
            session_id: iflow::headers::new_session_id(),
            conversation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// A new user prompt starts a new conversation id; tool results continue
    /// the current one (protocol section 4).
    pub fn start_turn(&mut self) {
        self.conversation_id = uuid::Uuid::new_v4().to_string();
    }
}

impl Default for SessionIds {
    fn default() -> Self {
        Self::new()
    }
}

/// `stream: true` with `stream_options.include_usage: true`, keeping any
/// other stream option the client set (a non-object value is replaced).
pub fn ask_for_stream_usage(body: &mut Map<String, Value>) {
    body.insert("stream".into(), Value::Bool(true));
    let options = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Value::Object(o) = options {
        o.insert("include_usage".into(), Value::Bool(true));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The official iFlow CLI's wire behaviour.
    Iflow,
    /// Any OpenAI-compatible API: bearer key, body passed through.
    OpenAi,
}

impl Profile {
    pub fn for_auth(auth: AuthType) -> Self {
        if auth.is_iflow() {
            Profile::Iflow
        } else {
            Profile::OpenAi
        }
    }

    /// `<base>/chat/completions`, with a trailing `/` on the base ignored.
    pub fn chat_url(base_url: &str) -> String {
        format!("{}/chat/completions", base_url.trim_end_matches('/'))
    }

    /// The headers that stay the same until the credentials change.
    pub fn fixed_headers(
        self,
        creds: &Credentials,
        ids: &SessionIds,
    ) -> Vec<(&'static str, String)> {
        match self {
            Profile::Iflow => iflow::headers::fixed(creds.api_key.expose(), &ids.session_id),
            Profile::OpenAi => openai::headers(creds.api_key.expose()),
        }
    }

    /// The headers of one call, signed now.
    pub fn per_request_headers(
        self,
        creds: &Credentials,
        ids: &SessionIds,
        now_ms: i64,
    ) -> Vec<(&'static str, String)> {
        match self {
            Profile::Iflow => iflow::headers::per_request(&iflow::headers::HeaderInput {
                api_key: creds.api_key.expose(),
                session_id: &ids.session_id,
                conversation_id: &ids.conversation_id,
                timestamp_ms: now_ms,
                traceparent: &iflow::headers::new_traceparent(),
            }),
            Profile::OpenAi => Vec::new(),
        }
    }

    /// Applies the profile's body rules to the client's request.
    pub fn rewrite_body(
        self,
        body: &mut Map<String, Value>,
        auth: AuthType,
        stream: bool,
        thinking: Option<iflow::body::Thinking>,
    ) {
        match self {
            Profile::Iflow => iflow::body::apply(body, auth.is_iflow(), stream, thinking),
            Profile::OpenAi => openai::rewrite_body(body, stream),
        }
    }

    /// Recognises an error payload inside a 2xx reply or a stream event.
    pub fn classify_body(self, body: &Value) -> Option<UpstreamFault> {
        let fault = match self {
            Profile::Iflow => iflow::errors::classify_body(body),
            Profile::OpenAi => openai::classify_body(body),
        };
        fault.map(UpstreamFault::redacted)
    }

    /// Maps a non-2xx reply.
    pub fn classify_status(
        self,
        status: u16,
        retry_after: Option<String>,
        body: &[u8],
    ) -> UpstreamFault {
        let fault = match self {
            Profile::Iflow => iflow::errors::classify_status(status, retry_after, body),
            Profile::OpenAi => openai::classify_status(status, retry_after, body),
        };
        fault.redacted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_url_strips_one_trailing_slash_form() {
        assert_eq!(
            Profile::chat_url("https://apis.iflow.cn/v1/"),
            "https://apis.iflow.cn/v1/chat/completions"
        );
        assert_eq!(
            Profile::chat_url("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
    }

    #[test]
    fn openai_profile_sends_only_a_bearer_key() {
        let creds = Credentials {
            api_key: Secret::new("sk-other"),
            base_url: "http://x/v1".into(),
            auth_type: AuthType::OpenAi,
        };
        let ids = SessionIds::new();
        let mut h = Profile::OpenAi.fixed_headers(&creds, &ids);
        h.extend(Profile::OpenAi.per_request_headers(&creds, &ids, 1));
        assert_eq!(
            h,
            vec![
                ("content-type", "application/json".to_string()),
                ("authorization", "Bearer sk-other".to_string())
            ]
        );
    }

    #[test]
    fn a_new_turn_changes_only_the_conversation_id() {
        let mut ids = SessionIds::new();
        let (s, c) = (ids.session_id.clone(), ids.conversation_id.clone());
        ids.start_turn();
        assert_eq!(ids.session_id, s);
        assert_ne!(ids.conversation_id, c);
    }
}
