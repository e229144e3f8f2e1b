//! `token login`: the iFlow OAuth flow of protocol sections 8.2-8.5.
//!
//! Callback mode: a one-route server on 127.0.0.1 receives the browser's
//! redirect, checks `state`, and hands the code over; the browser is sent to
//! the success page only once the code is exchanged and the key fetched,
//! and to the error page otherwise. Paste mode (no
//! browser on this machine): the user logs in elsewhere on the
//! `code-display` page and pastes the code or the whole URL.

use super::client::OAuthClient;
use super::{OAuthError, TokenSet, UserInfo};
use crate::profile::iflow::signature::hex;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The official client's callback port range starts here.
pub const FIRST_CALLBACK_PORT: u16 = 11451;

pub struct LoginOptions {
    /// Fixed callback port; `None` tries 11451 upward.
    pub port: Option<u16>,
    /// Paste mode instead of a callback server.
    pub paste: bool,
    /// Launch the system browser in callback mode.
    pub open_browser: bool,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no free callback port on 127.0.0.1 ({0})")]
    Port(String),
    #[error(
        "no login arrived within {0:?}; run `iflow-actix token login` again (add --no-browser on a machine without a browser)"
    )]
    Timeout(Duration),
    #[error("no code was pasted within {0:?}; run `iflow-actix token login --no-browser` again")]
    PasteTimeout(Duration),
    #[error("the login was refused in the browser: {0}")]
    Denied(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("iFlow returned no API key for this login; the account may not have API access")]
    NoApiKey,
}

/// Runs the whole flow; `announce` shows the URL and instructions.
pub async fn login(
    client: &OAuthClient,
    opts: &LoginOptions,
    announce: &dyn Fn(&str),
) -> Result<(TokenSet, UserInfo), LoginError> {
    let state = random_state()?;
    let (code, redirect_uri) = if opts.paste {
        let redirect = client.endpoints().page("code-display");
        let url = client.authorize_url(&redirect, &state);
        announce(&format!(
            "Open this URL in a browser and log in:\n\n  {url}\n\nThen paste the code shown (or the whole address of that page) here:"
        ));
        let code = read_pasted_code(&state, opts.timeout).await?;
        (code, redirect)
    } else {
        let (listener, port) = bind_callback(opts.port)?;
        let redirect = format!("http://localhost:{port}/oauth2callback");
        let url = client.authorize_url(&redirect, &state);
        announce(&format!(
            "Open this URL in a browser and log in (waiting on port {port}):\n\n  {url}\n"
        ));
        if opts.open_browser {
            open_browser(&url);
        }
        return wait_for_callback(listener, &state, client, opts.timeout, &redirect).await;
    };
    finish(client, &code, &redirect_uri).await
}

/// Exchanges the code for tokens and fetches the login's API key (protocol
/// 8.3 and 8.5).
async fn finish(
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
) -> Result<(TokenSet, UserInfo), LoginError> {
    let tokens = client.exchange_code(code, redirect_uri).await?;
    let user = client.user_info(&tokens.access_token).await?;
    if user.api_key.is_empty() {
        return Err(LoginError::NoApiKey);
    }
    Ok((tokens, user))
}

/// 32 random bytes as 64 hex characters.
fn random_state() -> Result<String, LoginError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| LoginError::Input(format!("no randomness: {e}")))?;
    Ok(hex(&bytes))
}

fn bind_callback(port: Option<u16>) -> Result<(TcpListener, u16), LoginError> {
    let candidates: Vec<u16> = match port {
        Some(p) => vec![p],
        None => (FIRST_CALLBACK_PORT..FIRST_CALLBACK_PORT + 50).collect(),
    };
    let mut last = String::from("no port tried");
    for p in candidates {
        match TcpListener::bind(("127.0.0.1", p)) {
            Ok(l) => {
                let bound = l.local_addr().map(|a| a.port()).unwrap_or(p);
                return Ok((l, bound));
            }
            Err(e) => last = format!("port {p}: {e}"),
        }
    }
    Err(LoginError::Port(last))
}

/// A code from the browser, with the way to tell the browser's page
/// whether the login it started worked; or why there is none.
type CallbackResult = Result<(String, oneshot::Sender<bool>), LoginError>;

struct Callback {
    state: String,
    success_page: String,
    error_page: String,
    tx: mpsc::Sender<CallbackResult>,
}

async fn callback(req: HttpRequest, cb: web::Data<Callback>) -> HttpResponse {
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    if query.get("state") != Some(&cb.state) {
        log::warn!("login callback with a wrong state ignored");
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body(
                "This login link does not belong to the running `token login` (state mismatch).",
            );
    }
    if let Some(err) = query.get("error") {
        let _ = cb.tx.send(Err(LoginError::Denied(err.clone()))).await;
        return redirect(&cb.error_page);
    }
    match query.get("code").filter(|c| !c.is_empty()) {
        Some(code) => {
            // The browser learns the outcome once the code is exchanged and
            // the key fetched, so its page never says "success" for a login
            // that then failed.
            let (answer, answered) = oneshot::channel();
            if cb.tx.send(Ok((code.clone(), answer))).await.is_err() {
                return redirect(&cb.error_page);
            }
            match answered.await {
                Ok(true) => redirect(&cb.success_page),
                _ => redirect(&cb.error_page),
            }
        }
        None => HttpResponse::BadRequest().body("missing code"),
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header(("location", to))
        .finish()
}

/// Serves the callback until a code arrives (or the timeout), finishes the
/// login with it, and only then answers the browser.
async fn wait_for_callback(
    listener: TcpListener,
    state: &str,
    client: &OAuthClient,
    timeout: Duration,
    redirect_uri: &str,
) -> Result<(TokenSet, UserInfo), LoginError> {
    let (tx, mut rx) = mpsc::channel(1);
    let data = web::Data::new(Callback {
        state: state.to_string(),
        success_page: client.endpoints().page("success"),
        error_page: client.endpoints().page("error"),
        tx,
    });
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/oauth2callback", web::get().to(callback))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|e| LoginError::Port(e.to_string()))?;
    // Browsers may resolve `localhost` to ::1 first; listen there too when we can.
    if let Ok(v6) = TcpListener::bind(("::1", port)) {
        server = server
            .listen(v6)
            .map_err(|e| LoginError::Port(e.to_string()))?;
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let outcome = match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(Ok((code, answer)))) => {
            let done = finish(client, &code, redirect_uri).await;
            let _ = answer.send(done.is_ok());
            done
        }
        Ok(Some(Err(e))) => Err(e),
        Ok(None) => Err(LoginError::Input("callback server stopped".into())),
        Err(_) => Err(LoginError::Timeout(timeout)),
    };
    // A second code (a reloaded page) waiting in the channel is answered
    // with the error page at once, rather than holding up the stop below.
    drop(rx);
    // Let the browser receive its redirect before the server goes away.
    handle.stop(true).await;
    outcome
}

/// Reads one line from stdin: a bare code, or a URL / query with `code=`.
async fn read_pasted_code(state: &str, timeout: Duration) -> Result<String, LoginError> {
    // A detached thread, not `spawn_blocking`: a stdin read still blocked on
    // the runtime's blocking pool keeps the runtime, and so the process, alive
    // after the timeout until someone presses Enter.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    let line = tokio::time::timeout(timeout, rx)
        .await
        .map_err(|_| LoginError::PasteTimeout(timeout))?
        .map_err(|_| LoginError::Input("the stdin reader stopped".into()))?
        .map_err(|e| LoginError::Input(format!("cannot read the code: {e}")))?;
    parse_pasted(line.trim(), state)
}

/// Accepts `CODE`, `code=CODE&state=…` or a whole URL carrying them.
pub fn parse_pasted(text: &str, state: &str) -> Result<String, LoginError> {
    if text.is_empty() {
        return Err(LoginError::Input("no code was pasted".into()));
    }
    if !text.contains("code=") {
        return Ok(text.to_string());
    }
    let query = text.split_once('?').map_or(text, |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Some(got) = pairs.get("state")
        && got != state
    {
        return Err(LoginError::Input(
            "the pasted address belongs to another login (state mismatch)".into(),
        ));
    }
    pairs
        .get("code")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| LoginError::Input("the pasted text has an empty code".into()))
}

fn open_browser(url: &str) {
    let opener: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &["cmd", "/C", "start", ""]
    } else {
        &["xdg-open"]
    };
    let spawned = std::process::Command::new(opener[0])
        .args(&opener[1..])
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        log::debug!("no browser could be started; open the URL by hand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_codes() {
        assert_eq!(parse_pasted("abc", "s").ok().as_deref(), Some("abc"));
        assert_eq!(
            parse_pasted("https://iflow.cn/oauth/code-display?code=xyz&state=s", "s")
                .ok()
                .as_deref(),
            Some("xyz")
        );
        assert!(parse_pasted("code=xyz&state=other", "s").is_err());
        assert!(parse_pasted("", "s").is_err());
    }

    #[test]
    fn state_is_64_hex() {
        let s = random_state().expect("state");
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
