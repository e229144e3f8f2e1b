//! `token refresh <uuid>`: the refresh-token grant against the mock OAuth
//! server, the user-info call after it, and what ends up on disk for a
//! success, a dead refresh token and a busy server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::oauth_mock::{BASIC, CLIENT_ID, CLIENT_SECRET};
use accounts_support::{
    OAuthMock, TestEnv, TokenReply, account_file, assert_no_secret, snapshot, uuid_of,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

const OLD_KEY: &str = "sk-old-00000000000000000001";
const NEW_KEY: &str = "sk-new-00000000000000000002";
const BASE: &str = "https://apis.iflow.cn/v1";

/// An OAuth account with tokens `at-r` / `rt-r` expiring in an hour.
fn setup() -> (TestEnv, OAuthMock, Value) {
    let oauth = OAuthMock::start();
    let mut env = TestEnv::new();
    env.set_all(oauth.env());
    let account = account_file(OLD_KEY, BASE, Some(("r", Duration::hours(1))));
    env.write_account(&account);
    (env, oauth, account)
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn refresh_rotates_the_key_and_stores_new_tokens() {
    let (env, oauth, before) = setup();
    oauth.script(
        "rt-r",
        vec![TokenReply::tokens("at-new", "rt-new", 3 * 86_400, NEW_KEY)],
    );
    let uuid = uuid_of(&before);
    let ran = env.run(&["token", "refresh", &uuid]);
    ran.assert_ok();
    assert!(
        ran.stdout
            .starts_with(&format!("account {uuid}: refreshed, valid until ")),
        "{ran:#?}"
    );
    assert!(ran.stdout.contains("the API key was rotated"), "{ran:#?}");
    assert_no_secret(&ran, &[OLD_KEY, NEW_KEY, "at-new", "rt-new", "rt-r"]);

    let grants = oauth.token_requests("rt-r");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(grants[0].authorization.as_deref(), Some(BASIC));
    let fields: Vec<(&str, &str)> = grants[0]
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-r"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]
    );
    let info = oauth.user_info_requests();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].query_value("accessToken"), Some("at-new"));

    let after = env.account(&uuid);
    assert_eq!(after["api_key"], NEW_KEY);
    assert_eq!(after["oauth_access_token"], "at-new");
    assert_eq!(after["oauth_refresh_token"], "rt-new");
    let left = time(&after["oauth_expires_at"]) - Utc::now();
    assert!(
        (left - Duration::days(3)).num_seconds().abs() < 60,
        "{left}"
    );
    assert_eq!(after["created_at"], before["created_at"]);
    assert!(time(&after["updated_at"]) > time(&before["updated_at"]));
    assert!(after.get("state").is_none(), "{after:#}");
}

#[test]
fn refresh_keeps_the_key_when_user_info_has_none() {
    let (env, oauth, before) = setup();
    oauth.script(
        "rt-r",
        vec![TokenReply::tokens("at-new", "rt-new", 86_400, "")],
    );
    let ran = env.run(&["token", "refresh", &uuid_of(&before)]);
    ran.assert_ok();
    assert!(!ran.stdout.contains("rotated"), "{ran:#?}");
    let after = env.account(&uuid_of(&before));
    assert_eq!(after["api_key"], OLD_KEY);
    assert_eq!(after["oauth_refresh_token"], "rt-new");
}

#[test]
fn invalid_grant_marks_needs_login_and_keeps_the_account() {
    let (env, oauth, before) = setup();
    oauth.script("rt-r", vec![TokenReply::InvalidGrant]);
    let uuid = uuid_of(&before);
    let ran = env.run(&["token", "refresh", &uuid]);
    ran.assert_failed();
    let errors: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{ran:#?}");
    assert!(
        errors[0].contains("no longer valid") && errors[0].contains("token login"),
        "{ran:#?}"
    );
    assert_no_secret(&ran, &[OLD_KEY, "rt-r", "at-r"]);
    assert!(oauth.user_info_requests().is_empty());

    let after = env.account(&uuid);
    assert_eq!(after["state"], "needs-login");
    for field in [
        "api_key",
        "oauth_access_token",
        "oauth_refresh_token",
        "oauth_expires_at",
        "created_at",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    let list = env.run(&["token", "list", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["state"], "needs-login");
}

#[test]
fn refresh_failure_prints_exactly_one_stderr_line() {
    let (env, oauth, before) = setup();
    oauth.script("rt-r", vec![TokenReply::InvalidGrant]);
    let ran = env.run(&["token", "refresh", &uuid_of(&before)]);
    ran.assert_failed();
    assert_eq!(
        ran.stderr.lines().count(),
        1,
        "one-line error expected: {ran:#?}"
    );
}

#[test]
fn busy_or_server_error_fails_without_marking_anything() {
    for reply in [TokenReply::Busy, TokenReply::ServerError] {
        let (env, oauth, before) = setup();
        oauth.script("rt-r", vec![reply.clone()]);
        let snap = snapshot(&env.data_dir());
        let ran = env.run(&["token", "refresh", &uuid_of(&before)]);
        ran.assert_failed();
        let last = ran.stderr.lines().last().unwrap_or_default().to_string();
        assert!(
            last.starts_with("error: iFlow OAuth is temporarily unavailable"),
            "{reply:?}: {ran:#?}"
        );
        assert_eq!(
            oauth.token_requests("rt-r").len(),
            1,
            "no retry from the CLI"
        );
        assert_eq!(
            snapshot(&env.data_dir()),
            snap,
            "{reply:?} changed the data dir"
        );
    }
}

#[test]
fn refresh_refuses_unknown_and_plain_key_accounts() {
    let (env, oauth, _) = setup();
    let plain = account_file("sk-plain-00000000000000000003", BASE, None);
    env.write_account(&plain);
    let ran = env.run(&["token", "refresh", &uuid_of(&plain)]);
    ran.assert_failed();
    assert!(
        ran.stderr.contains("has no OAuth login to refresh"),
        "{ran:#?}"
    );
    let missing = uuid::Uuid::new_v4().to_string();
    let ran = env.run(&["token", "refresh", &missing]);
    ran.assert_failed();
    assert!(
        ran.stderr.contains(&format!("error: no account {missing}")),
        "{ran:#?}"
    );
    assert!(oauth.requests().is_empty());
}

/// New tokens could not be saved over a file that cannot be read, so the
/// refresh token is not spent: the command fails before the token endpoint.
#[test]
fn refresh_of_an_unreadable_file_fails_before_the_token_endpoint() {
    let (env, oauth, before) = setup();
    oauth.script(
        "rt-r",
        vec![TokenReply::tokens("at-new", "rt-new", 86_400, NEW_KEY)],
    );
    let uuid = uuid_of(&before);
    let path = env.accounts_dir().join(format!("{uuid}.json"));
    let mut text = serde_json::to_string_pretty(&before).unwrap();
    text.truncate(text.len() - 3);
    std::fs::write(&path, &text).unwrap();

    let ran = env.run(&["token", "refresh", &uuid]);
    ran.assert_failed();
    // Besides the scan's warning about the skipped file, one error line.
    let errors: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{ran:#?}");
    assert!(
        errors[0].starts_with(&format!(
            "error: account {} was not refreshed: its file cannot be read",
            &uuid[..8]
        )) && errors[0].ends_with("the refresh token was not used"),
        "{ran:#?}"
    );
    assert_no_secret(&ran, &[OLD_KEY, "rt-r", "at-r"]);
    assert!(oauth.requests().is_empty(), "{:#?}", oauth.requests());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let list = env.run(&["token", "list", "--json"]);
    list.assert_ok();
    let rows: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["state"], "unreadable", "{list:#?}");
}
