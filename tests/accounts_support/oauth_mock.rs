//! A scripted iFlow OAuth server: token endpoint (code exchange and refresh)
//! and user-info endpoint, recording every request.
//!
//! The token endpoint refuses (401 `invalid_client`) a request without the
//! official Basic header, form content type, client id or secret. Replies are
//! scripted per refresh token or authorisation code: a queue whose last entry
//! repeats. An access token the mock issued answers user info with the API
//! key scripted beside it.

use super::{Journal, MockServer};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BASIC: &str = "Basic MTAwMDkzMTEwMDE6NFozWWpYeWNWc1F2eUdGMWV0aU5sSUJCNFJzcVNEdFc=";
pub const CLIENT_ID: &str = "10009311001";
pub const CLIENT_SECRET: &str = "4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW";
pub const BUSY: &str = "当前找我聊的人太多了";

#[derive(Debug, Clone)]
pub enum TokenReply {
    /// 200 with tokens; user info for `access_token` then returns `api_key`.
    Tokens {
        access_token: String,
        refresh_token: String,
        expires_in: i64,
        api_key: String,
    },
    /// 200 `{"success":false,"message":"当前找我聊的人太多了"}`.
    Busy,
    /// 400 `{"error":"invalid_grant"}`.
    InvalidGrant,
    /// 500.
    ServerError,
}

impl TokenReply {
    pub fn tokens(access: &str, refresh: &str, expires_in: i64, api_key: &str) -> Self {
        TokenReply::Tokens {
            access_token: access.into(),
            refresh_token: refresh.into(),
            expires_in,
            api_key: api_key.into(),
        }
    }
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub form: Vec<(String, String)>,
    pub at: Instant,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        pick(&self.form, name)
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        pick(&self.query, name)
    }

    /// The refresh token or code this token request is about.
    pub fn grant_key(&self) -> Option<&str> {
        self.field("refresh_token").or_else(|| self.field("code"))
    }
}

fn pick<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct Script {
    replies: HashMap<String, VecDeque<TokenReply>>,
    user_keys: HashMap<String, String>,
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<Script>>,
    journal: Arc<Journal<Recorded>>,
}

pub struct OAuthMock {
    shared: Shared,
    server: MockServer,
}

fn record(req: &HttpRequest, body: &[u8]) -> Recorded {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let pairs = |b: &[u8]| url::form_urlencoded::parse(b).into_owned().collect();
    Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: pairs(req.query_string().as_bytes()),
        authorization: header("authorization"),
        content_type: header("content-type"),
        form: pairs(body),
        at: Instant::now(),
    }
}

async fn token(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let seen = record(&req, &body);
    shared.journal.push(seen.clone());
    let client_ok = seen.authorization.as_deref() == Some(BASIC)
        && seen.content_type.as_deref() == Some("application/x-www-form-urlencoded")
        && seen.field("client_id") == Some(CLIENT_ID)
        && seen.field("client_secret") == Some(CLIENT_SECRET);
    if !client_ok {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let (reply, delay) = {
        let mut s = shared.script.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let key = seen.grant_key().unwrap_or_default().to_string();
        let reply = s.replies.get_mut(&key).and_then(|q| match q.len() {
            0 => None,
            1 => q.front().cloned(),
            _ => q.pop_front(),
        });
        if let Some(TokenReply::Tokens {
            access_token,
            api_key,
            ..
        }) = &reply
        {
            s.user_keys.insert(access_token.clone(), api_key.clone());
        }
        (reply, s.delay)
    };
    actix_web::rt::time::sleep(delay).await;
    shared.script.lock().unwrap().in_flight -= 1;
    match reply {
        Some(TokenReply::Tokens {
            access_token,
            refresh_token,
            expires_in,
            ..
        }) => HttpResponse::Ok().json(json!({
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": expires_in,
            "token_type": "bearer",
            "scope": "read",
        })),
        Some(TokenReply::Busy) => {
            HttpResponse::Ok().json(json!({"success": false, "message": BUSY}))
        }
        Some(TokenReply::InvalidGrant) => HttpResponse::BadRequest()
            .json(json!({"error": "invalid_grant", "error_description": "invalid_grant"})),
        Some(TokenReply::ServerError) => HttpResponse::InternalServerError().body("boom"),
        None => HttpResponse::BadRequest().json(json!({"error": "unscripted_test_grant"})),
    }
}

async fn user_info(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let seen = record(&req, b"");
    shared.journal.push(seen.clone());
    let key = seen
        .query_value("accessToken")
        .and_then(|t| shared.script.lock().unwrap().user_keys.get(t).cloned());
    match key {
        Some(api_key) => HttpResponse::Ok().json(json!({
            "success": true,
            "data": {"apiKey": api_key, "userName": "tester", "userId": "42"},
        })),
        None => {
            HttpResponse::Ok().json(json!({"success": false, "message": "unknown accessToken"}))
        }
    }
}

impl OAuthMock {
    pub fn start() -> Self {
        let shared = Shared {
            script: Arc::default(),
            journal: Arc::default(),
        };
        let data = web::Data::new(shared.clone());
        let server = MockServer::start(move |cfg| {
            cfg.app_data(data.clone())
                .route("/oauth/token", web::post().to(token))
                .route("/api/oauth/getUserInfo", web::get().to(user_info));
        });
        Self { shared, server }
    }

    pub fn authorize_url(&self) -> String {
        self.server.url("/oauth")
    }

    /// The IFLOW_OAUTH_* variables pointing the binary here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("IFLOW_OAUTH_AUTHORIZE_URL".into(), self.authorize_url()),
            (
                "IFLOW_OAUTH_TOKEN_URL".into(),
                self.server.url("/oauth/token"),
            ),
            (
                "IFLOW_OAUTH_USERINFO_URL".into(),
                self.server.url("/api/oauth/getUserInfo"),
            ),
        ]
    }

    /// Replies for the refresh token or code `grant`; the last one repeats.
    pub fn script(&self, grant: &str, replies: Vec<TokenReply>) {
        let mut s = self.shared.script.lock().unwrap();
        s.replies.insert(grant.to_string(), replies.into());
    }

    /// How long every token reply is held back.
    pub fn set_token_delay(&self, delay: Duration) {
        self.shared.script.lock().unwrap().delay = delay;
    }

    /// Most token requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.script.lock().unwrap().max_in_flight
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.journal.all()
    }

    /// Token requests about `grant` (a refresh token or a code).
    pub fn token_requests(&self, grant: &str) -> Vec<Recorded> {
        only_token(&self.requests(), grant)
    }

    /// Waits until at least `n` token requests about `grant` arrived.
    pub fn wait_token_requests(&self, grant: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        let what = format!("{n} token requests for {grant}");
        let all = self
            .shared
            .journal
            .wait_until(&what, timeout, |r| only_token(r, grant).len() >= n);
        only_token(&all, grant)
    }

    pub fn user_info_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/api/oauth/getUserInfo")
            .collect()
    }
}

fn only_token(all: &[Recorded], grant: &str) -> Vec<Recorded> {
    all.iter()
        .filter(|r| r.path == "/oauth/token" && r.grant_key() == Some(grant))
        .cloned()
        .collect()
}
