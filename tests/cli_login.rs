//! `token login`: the browser is played by the test, which reads the
//! authorize URL from the CLI's stdout and calls the callback (or pastes the
//! code); the token and user-info endpoints are the mock OAuth server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::oauth_mock::{BASIC, CLIENT_ID, CLIENT_SECRET};
use accounts_support::{
    HttpReply, OAuthMock, Running, TestEnv, TokenReply, assert_no_secret, http_get,
};
use std::time::Duration;

const KEY: &str = "sk-login-000000000000000ab9f";
const WAIT: Duration = Duration::from_secs(10);

fn setup() -> (TestEnv, OAuthMock) {
    let oauth = OAuthMock::start();
    let mut env = TestEnv::new();
    env.set_all(oauth.env());
    (env, oauth)
}

/// The authorize URL the CLI printed, and its query pairs in order.
fn announced_url(login: &mut Running) -> (String, Vec<(String, String)>) {
    let line = login.wait_stdout_line("?loginMethod=", WAIT);
    let url = line.trim().to_string();
    let query = url.split_once('?').unwrap().1;
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (url, pairs)
}

fn state_of(pairs: &[(String, String)]) -> String {
    let state = pairs.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    assert_eq!(state.len(), 64, "{state}");
    assert!(state.chars().all(|c| c.is_ascii_hexdigit()), "{state}");
    state
}

fn expect_url_shape(oauth: &OAuthMock, url: &str, pairs: &[(String, String)], redirect: &str) {
    assert!(
        url.starts_with(&format!("{}?", oauth.authorize_url())),
        "{url}"
    );
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["loginMethod", "type", "redirect", "state", "client_id"]
    );
    assert_eq!(pairs[0].1, "phone");
    assert_eq!(pairs[1].1, "phone");
    assert_eq!(pairs[2].1, redirect);
    assert_eq!(pairs[4].1, CLIENT_ID);
    // The redirect is percent-encoded in the URL itself.
    let encoded: String = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
    assert!(url.contains(&format!("&redirect={encoded}&")), "{url}");
}

fn expect_exchange(oauth: &OAuthMock, code: &str, redirect: &str) {
    let exchanges = oauth.token_requests(code);
    assert_eq!(exchanges.len(), 1, "{exchanges:#?}");
    let r = &exchanges[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.authorization.as_deref(), Some(BASIC));
    let fields: Vec<(&str, &str)> = r
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]
    );
    let info = oauth.user_info_requests();
    assert_eq!(info.len(), 1, "{info:#?}");
    assert_eq!(info[0].query_value("accessToken"), Some("at-login"));
}

fn expect_stored_login(env: &TestEnv) {
    let accounts = env.accounts();
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    let a = accounts.values().next().unwrap();
    assert_eq!(a["auth_type"], "oauth-iflow");
    assert_eq!(a["api_key"], KEY);
    assert_eq!(a["base_url"], "https://apis.iflow.cn/v1");
    assert_eq!(a["oauth_access_token"], "at-login");
    assert_eq!(a["oauth_refresh_token"], "rt-login");
    let expires =
        chrono::DateTime::parse_from_rfc3339(a["oauth_expires_at"].as_str().unwrap()).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        (left - chrono::Duration::days(7)).num_seconds().abs() < 60,
        "{left}"
    );
}

/// A callback-mode login on a free port that prints the URL only.
const CALLBACK_LOGIN: &[&str] = &[
    "token",
    "login",
    "--no-open",
    "--port",
    "0",
    "--timeout",
    "10s",
];

/// The callback's answer sent the browser to iFlow's `page` (`success` or
/// `error`).
fn assert_sent_to(reply: &HttpReply, oauth: &OAuthMock, page: &str) {
    assert_eq!(reply.status, 301, "{}", reply.text());
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/{page}", oauth.authorize_url()).as_str())
    );
}

fn script_login(oauth: &OAuthMock, code: &str) {
    oauth.script(
        code,
        vec![TokenReply::tokens("at-login", "rt-login", 7 * 86_400, KEY)],
    );
}

#[test]
fn callback_with_wrong_state_is_refused_then_the_right_one_logs_in() {
    let (env, oauth) = setup();
    script_login(&oauth, "code-123");
    let mut login = env.spawn(CALLBACK_LOGIN);
    let (url, pairs) = announced_url(&mut login);
    let redirect = pairs[2].1.clone();
    let port: u16 = redirect
        .strip_prefix("http://localhost:")
        .and_then(|r| r.strip_suffix("/oauth2callback"))
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    expect_url_shape(&oauth, &url, &pairs, &redirect);
    let state = state_of(&pairs);

    let wrong = http_get(&format!("{redirect}?code=stolen&state={}", "0".repeat(64)));
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    assert!(wrong.text().contains("state mismatch"), "{}", wrong.text());
    assert_eq!(http_get(&format!("{redirect}?code=stolen")).status, 400);

    let right = http_get(&format!("{redirect}?code=code-123&state={state}"));
    assert_sent_to(&right, &oauth, "success");

    let ran = login.wait(WAIT);
    ran.assert_ok();
    assert!(ran.stdout.contains("logged in as tester"), "{ran:#?}");
    assert!(ran.stdout.contains("added account "), "{ran:#?}");
    assert_no_secret(&ran, &[KEY, "at-login", "rt-login"]);
    assert!(oauth.token_requests("stolen").is_empty());
    expect_exchange(&oauth, "code-123", &redirect);
    expect_stored_login(&env);
}

#[test]
fn a_code_the_token_endpoint_refuses_sends_the_browser_to_the_error_page() {
    let (env, oauth) = setup();
    oauth.script("code-bad", vec![TokenReply::ServerError]);
    let mut login = env.spawn(CALLBACK_LOGIN);
    let (_, pairs) = announced_url(&mut login);
    let redirect = pairs[2].1.clone();
    let reply = http_get(&format!(
        "{redirect}?code=code-bad&state={}",
        state_of(&pairs)
    ));
    // The page must not say "success" for a login that failed.
    assert_sent_to(&reply, &oauth, "error");
    let ran = login.wait(WAIT);
    ran.assert_failed();
    assert!(env.accounts().is_empty());
}

#[test]
fn browser_denial_on_a_chosen_port_fails_the_login() {
    let (mut env, oauth) = setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.set("OAUTH_CALLBACK_PORT", &port.to_string());
    let mut login = env.spawn(&["token", "login", "--no-open", "--timeout", "10s"]);
    let (_, pairs) = announced_url(&mut login);
    let redirect = format!("http://localhost:{port}/oauth2callback");
    assert_eq!(pairs[2].1, redirect);
    let denied = http_get(&format!(
        "{redirect}?error=access_denied&state={}",
        state_of(&pairs)
    ));
    assert_sent_to(&denied, &oauth, "error");
    let ran = login.wait(WAIT);
    ran.assert_failed();
    assert!(
        ran.stderr
            .contains("error: the login was refused in the browser: access_denied"),
        "{ran:#?}"
    );
    assert!(oauth.requests().is_empty(), "{:#?}", oauth.requests());
    assert!(env.accounts().is_empty());
}

#[test]
fn paste_mode_accepts_a_bare_code() {
    let (env, oauth) = setup();
    script_login(&oauth, "code-abc");
    let mut login = env.spawn(&["token", "login", "--no-browser", "--timeout", "10s"]);
    let (url, pairs) = announced_url(&mut login);
    let redirect = format!("{}/code-display", oauth.authorize_url());
    expect_url_shape(&oauth, &url, &pairs, &redirect);
    login.write_stdin("code-abc\n");
    let ran = login.wait(WAIT);
    ran.assert_ok();
    assert_no_secret(&ran, &[KEY, "at-login", "rt-login"]);
    expect_exchange(&oauth, "code-abc", &redirect);
    expect_stored_login(&env);
}

#[test]
fn a_second_login_with_the_same_key_keeps_a_base_url_set_by_hand() {
    let (env, oauth) = setup();
    let mirror = "https://mirror.example.org/v1";
    let before =
        accounts_support::account_file(KEY, mirror, Some(("old", chrono::Duration::days(1))));
    env.write_account(&before);
    script_login(&oauth, "code-again");
    let mut login = env.spawn(&["token", "login", "--no-browser", "--timeout", "10s"]);
    announced_url(&mut login);
    login.write_stdin("code-again\n");
    login.wait(WAIT).assert_ok();
    let accounts = env.accounts();
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    let a = accounts.values().next().unwrap();
    assert_eq!(a["uuid"], before["uuid"]);
    assert_eq!(a["base_url"], mirror);
    assert_eq!(a["oauth_refresh_token"], "rt-login");
}

#[test]
fn paste_mode_accepts_the_whole_code_display_url() {
    let (env, oauth) = setup();
    script_login(&oauth, "code-xyz");
    let mut login = env.spawn(&["token", "login", "--no-browser", "--timeout", "10s"]);
    let (_, pairs) = announced_url(&mut login);
    let redirect = format!("{}/code-display", oauth.authorize_url());
    login.write_stdin(&format!(
        "  {redirect}?code=code-xyz&state={}  \n",
        state_of(&pairs)
    ));
    let ran = login.wait(WAIT);
    ran.assert_ok();
    expect_exchange(&oauth, "code-xyz", &redirect);
    expect_stored_login(&env);
}

#[test]
fn paste_mode_refuses_a_url_of_another_login() {
    let (env, oauth) = setup();
    script_login(&oauth, "code-xyz");
    let mut login = env.spawn(&["token", "login", "--no-browser", "--timeout", "10s"]);
    announced_url(&mut login);
    login.write_stdin(&format!(
        "https://x/code-display?code=code-xyz&state={}\n",
        "f".repeat(64)
    ));
    let ran = login.wait(WAIT);
    ran.assert_failed();
    assert!(ran.stderr.contains("state mismatch"), "{ran:#?}");
    assert!(oauth.requests().is_empty());
    assert!(env.accounts().is_empty());
}

#[test]
fn refused_code_or_missing_key_stores_nothing() {
    let (env, oauth) = setup();
    oauth.script(
        "code-nokey",
        vec![TokenReply::tokens("at-nokey", "rt-nokey", 3600, "")],
    );
    for (code, message) in [
        (
            "code-unknown",
            "error: iFlow OAuth refused the request: HTTP 400",
        ),
        (
            "code-nokey",
            "error: iFlow returned no API key for this login",
        ),
    ] {
        let ran = env.run_with_stdin(
            &["token", "login", "--no-browser", "--timeout", "10s"],
            &format!("{code}\n"),
        );
        ran.assert_failed();
        assert!(ran.stderr.contains(message), "{ran:#?}");
        assert!(env.accounts().is_empty());
    }
}

#[test]
fn callback_mode_times_out_with_a_clear_message() {
    let (env, oauth) = setup();
    let login = env.spawn(&[
        "token",
        "login",
        "--no-open",
        "--port",
        "0",
        "--timeout",
        "1s",
    ]);
    let ran = login.wait(WAIT);
    ran.assert_failed();
    assert!(
        ran.stderr.contains("error: no login arrived within 1s"),
        "{ran:#?}"
    );
    assert!(oauth.requests().is_empty());
    assert!(env.accounts().is_empty());
}

#[test]
fn paste_mode_times_out_while_nobody_types() {
    let (env, oauth) = setup();
    let mut login = env.spawn(&["token", "login", "--no-browser", "--timeout", "1s"]);
    announced_url(&mut login);
    // stdin stays open, as a terminal would: the timeout alone must end it.
    let ran = login.wait_stdin_open(WAIT);
    ran.assert_failed();
    // It names the mode already in use, not the flag to switch to it.
    assert!(
        ran.stderr.contains("error: no code was pasted within 1s")
            && ran.stderr.contains("token login --no-browser` again"),
        "{ran:#?}"
    );
    assert!(oauth.requests().is_empty());
}

#[test]
fn taken_callback_port_is_reported() {
    let (env, oauth) = setup();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let ran = env.run(&[
        "token",
        "login",
        "--no-open",
        "--port",
        &port,
        "--timeout",
        "5s",
    ]);
    ran.assert_failed();
    let expected = format!("error: no free callback port on 127.0.0.1 (port {port}: ");
    assert!(ran.stderr.contains(&expected), "{ran:#?}");
    assert!(oauth.requests().is_empty());
    assert!(env.accounts().is_empty());
}
