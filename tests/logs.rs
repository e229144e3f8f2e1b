//! The log: one access line per request (method, path, status, account),
//! never an API key, a query string or a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, get, request};
use common::{API_KEY, secs, setup, stream_body, user_body};

/// The access lines, `METHOD PATH STATUS DURATIONms account=ID key=ID
/// client=IP`, as (method, path, status, account, key); every client here is
/// 127.0.0.1.
fn access_lines(log: &str) -> Vec<(String, String, String, String, String)> {
    log.lines()
        .filter_map(|l| l.split_once("access_log] ").map(|(_, rest)| rest))
        .map(|rest| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(f.len(), 7, "{rest}");
            assert!(f[3].ends_with("ms"), "{rest}");
            let field = |i: usize, name: &str| {
                f[i].strip_prefix(name)
                    .unwrap_or_else(|| panic!("{rest}"))
                    .to_string()
            };
            assert_eq!(field(6, "client="), "127.0.0.1", "{rest}");
            let (account, key) = (field(4, "account="), field(5, "key="));
            (f[0].into(), f[1].into(), f[2].into(), account, key)
        })
        .collect()
}

#[test]
fn every_request_gets_one_access_line_and_no_secret_is_logged() {
    let s = setup(&[("IFLOW_LOG_LEVEL", "debug")]);
    let (addr, acc) = (s.gw.addr, s.account.as_str());
    // Logs name accounts by the first 8 characters: with uuid-as-bearer the
    // full uuid is a credential.
    let short = &acc[..8];
    assert_eq!(chat(addr, acc, &user_body("glm-5", "hi")).status, 200);
    assert_eq!(chat(addr, acc, &stream_body("glm-5", "hi")).status, 200);
    assert_eq!(get(addr, "/v1/models", Some(acc)).status, 200);
    assert_eq!(
        chat(addr, acc, &user_body("glm-5", "scenario:status:429")).status,
        429
    );
    assert_eq!(
        chat(addr, acc, &user_body("glm-5", "scenario:biz:434")).status,
        401
    );
    assert_eq!(
        chat(
            addr,
            acc,
            &stream_body("glm-5", "scenario:stream_disconnect")
        )
        .status,
        200
    );
    assert_eq!(chat(addr, API_KEY, &user_body("glm-5", "hi")).status, 401);
    assert_eq!(get(addr, "/health?token=query-secret", None).status, 200);
    assert_eq!(request(addr, "DELETE", "/v1/models", &[], None).status, 405);
    assert_eq!(get(addr, "/nope", None).status, 404);

    let expected: Vec<(&str, &str, &str, &str)> = vec![
        ("POST", "/v1/chat/completions", "200", short),
        ("POST", "/v1/chat/completions", "200", short),
        ("GET", "/v1/models", "200", short),
        ("POST", "/v1/chat/completions", "429", short),
        ("POST", "/v1/chat/completions", "401", short),
        ("POST", "/v1/chat/completions", "200", short),
        ("POST", "/v1/chat/completions", "401", "-"),
        ("GET", "/health", "200", "-"),
        ("DELETE", "/v1/models", "405", "-"),
        ("GET", "/nope", "404", "-"),
    ];
    assert!(
        s.gw.wait_log(secs(5), |l| access_lines(l).len() >= expected.len()),
        "{}",
        s.gw.log()
    );
    let log = s.gw.log();
    let got = access_lines(&log);
    let got: Vec<(&str, &str, &str, &str)> = got
        .iter()
        .map(|(m, p, st, a, k)| {
            assert_eq!(k, "-", "no gateway key was used");
            (m.as_str(), p.as_str(), st.as_str(), a.as_str())
        })
        .collect();
    assert_eq!(got, expected);
    assert!(!log.contains(API_KEY), "the API key was logged:\n{log}");
    assert!(!log.contains(acc), "a full account uuid was logged:\n{log}");
    assert!(
        !log.contains("query-secret"),
        "a query string was logged:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Usage that cannot be written is retried at every flush, but said once:
/// a damaged account file must not fill the log. Writing it again is said
/// too.
#[test]
fn unwritable_usage_is_warned_about_once_not_at_every_retry() {
    let s = setup(&[("IFLOW_USAGE_FLUSH_INTERVAL", "100ms")]);
    let (addr, acc) = (s.gw.addr, s.account.as_str());
    let file = s.dir.path().join("accounts").join(format!("{acc}.json"));
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"{ damaged").unwrap();
    assert_eq!(chat(addr, acc, &user_body("glm-5", "hi")).status, 200);
    // Many flushes (10 a second) try and fail.
    std::thread::sleep(secs(1));
    std::fs::write(&file, &good).unwrap();
    assert!(
        s.gw.wait_log(secs(5), |l| l.contains("usage written again")),
        "{}",
        s.gw.log()
    );
    let warned = s.gw.log().matches("usage not written, will retry").count();
    assert_eq!(warned, 1, "{}", s.gw.log());
    let saved = common::account_file(s.dir.path(), acc);
    assert_eq!(saved["request_count"], 1, "the count waited in memory");
}

/// A request made with a gateway key names the key's id (not the key) and
/// the account the pool gave it.
#[test]
fn a_gateway_keys_requests_are_logged_with_the_key_id() {
    let p = common::pool::pool(1, &[]);
    assert_eq!(p.chat("hi").status, 200);
    assert!(
        p.gw.wait_log(secs(5), |l| !access_lines(l).is_empty()),
        "{}",
        p.gw.log()
    );
    let log = p.gw.log();
    let lines = access_lines(&log);
    let (method, path, status, account, key) = &lines[0];
    assert_eq!(
        (method.as_str(), path.as_str(), status.as_str()),
        ("POST", "/v1/chat/completions", "200")
    );
    assert_eq!(account, &p.accounts[0][..8]);
    assert_eq!(key, &p.key_id);
    assert!(!log.contains(&p.key), "the key itself was logged");
}
