//! A tiny chat upstream: `POST <any prefix>/chat/completions`, recording the
//! `Authorization` header of every call. Replies are scripted per bearer key
//! (a queue whose last entry repeats); an unscripted key gets a completion,
//! as an event stream when the request asked for one. Errors are always
//! HTTP 200 JSON bodies, as iFlow sends them even to stream requests.

use super::{Journal, MockServer};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamReply {
    Completion,
    /// HTTP 200 `{"status":"439","msg":"token expired"}`.
    Expired439,
    /// HTTP 200 `{"status":"434","msg":"apiKey invalid"}`.
    Invalid434,
    /// HTTP 200 `{"status":200,"msg":"Invalid apiKey"}`.
    InvalidApiKey,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub authorization: String,
}

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<HashMap<String, VecDeque<UpstreamReply>>>>,
    journal: Arc<Journal<Call>>,
}

pub struct UpstreamMock {
    shared: Shared,
    server: MockServer,
}

/// A two-chunk event stream saying "ok", as iFlow streams a completion.
const STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"glm-4.6\",",
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"glm-4.6\",",
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

async fn completions(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let stream =
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|b| b["stream"] == true);
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let key = authorization.trim_start_matches("Bearer ").to_string();
    let reply = shared
        .script
        .lock()
        .unwrap()
        .get_mut(&key)
        .and_then(|q| {
            if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().copied()
            }
        })
        .unwrap_or(UpstreamReply::Completion);
    shared.journal.push(Call {
        path: req.path().to_string(),
        authorization,
    });
    if stream && reply == UpstreamReply::Completion {
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(STREAM);
    }
    let body = match reply {
        UpstreamReply::Completion => json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "glm-4.6",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }),
        UpstreamReply::Expired439 => json!({"status": "439", "msg": "token expired"}),
        UpstreamReply::Invalid434 => json!({"status": "434", "msg": "apiKey invalid"}),
        UpstreamReply::InvalidApiKey => json!({"status": 200, "msg": "Invalid apiKey"}),
    };
    HttpResponse::Ok().json(body)
}

impl UpstreamMock {
    pub fn start() -> Self {
        let shared = Shared::default();
        let data = web::Data::new(shared.clone());
        let server = MockServer::start(move |cfg| {
            cfg.app_data(data.clone())
                .route("/{prefix:.*}/chat/completions", web::post().to(completions));
        });
        Self { shared, server }
    }

    /// The base URL an account should use: `http://127.0.0.1:PORT/<prefix>`.
    pub fn base_url(&self, prefix: &str) -> String {
        self.server.url(&format!("/{prefix}"))
    }

    /// Replies for calls made with `key`; the last one repeats.
    pub fn script(&self, key: &str, replies: Vec<UpstreamReply>) {
        self.shared
            .script
            .lock()
            .unwrap()
            .insert(key.to_string(), replies.into());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.journal.all()
    }

    pub fn wait_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        self.shared
            .journal
            .wait_until(&format!("{n} upstream calls"), timeout, |c| c.len() >= n)
    }

    /// The bearer keys of every call, in order.
    pub fn keys(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|c| c.authorization.trim_start_matches("Bearer ").to_string())
            .collect()
    }
}
