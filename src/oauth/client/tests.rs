use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).single().expect("time")
}

#[test]
fn basic_header_matches_the_protocol_constant() {
    assert_eq!(
        basic_authorization(),
        "Basic MTAwMDkzMTEwMDE6NFozWWpYeWNWc1F2eUdGMWV0aU5sSUJCNFJzcVNEdFc="
    );
}

#[test]
fn token_reply_success() {
    let t = parse_token_reply(
        200,
        br#"{"access_token":"at","refresh_token":"rt","expires_in":3600,"token_type":"bearer","scope":"all"}"#,
        now(),
    )
    .expect("ok");
    assert_eq!(t.access_token.expose(), "at");
    assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt"));
    assert_eq!(t.expires_at, Some(now() + chrono::Duration::seconds(3600)));
}

#[test]
fn token_reply_failures_are_sorted() {
    let dead = parse_token_reply(
        400,
        br#"{"error":"invalid_grant","error_description":"expired"}"#,
        now(),
    );
    assert!(matches!(dead, Err(OAuthError::InvalidGrant(_))));
    let busy = parse_token_reply(
        200,
        "{\"success\":false,\"message\":\"当前找我聊的人太多了\"}".as_bytes(),
        now(),
    );
    assert!(matches!(busy, Err(OAuthError::Transient(_))));
    let down = parse_token_reply(503, b"<html>", now());
    assert!(matches!(down, Err(OAuthError::Transient(_))));
    let refused = parse_token_reply(401, br#"{"error":"invalid_client"}"#, now());
    assert!(matches!(refused, Err(OAuthError::Rejected(_))));
    let empty = parse_token_reply(200, br#"{"token_type":"bearer"}"#, now());
    assert!(matches!(empty, Err(OAuthError::Rejected(_))));
}

#[test]
fn user_info_reply() {
    let info = parse_user_info(
        200,
        br#"{"success":true,"data":{"apiKey":"sk-new","userId":"1","userName":"Li"}}"#,
    )
    .expect("ok");
    assert_eq!(info.api_key.expose(), "sk-new");
    assert_eq!(info.user_name.as_deref(), Some("Li"));
    assert!(matches!(
        parse_user_info(200, br#"{"success":false}"#),
        Err(UserInfoError::Retry(_))
    ));
    assert!(matches!(
        parse_user_info(502, b""),
        Err(UserInfoError::RetryAfterWait(_))
    ));
    assert!(matches!(
        parse_user_info(404, b""),
        Err(UserInfoError::Fatal(_))
    ));
}

/// No usable `expires_in`: the expiry stays unknown rather than invented;
/// `Account::refresh_due` then refreshes such a login once per lead period.
#[test]
fn token_reply_without_a_lifetime_has_no_expiry() {
    for body in [
        &br#"{"access_token":"at","refresh_token":"rt"}"#[..],
        br#"{"access_token":"at","expires_in":"soon"}"#,
        br#"{"access_token":"at","expires_in":-5}"#,
    ] {
        let t = parse_token_reply(200, body, now()).expect("ok");
        assert_eq!(t.expires_at, None, "{}", String::from_utf8_lossy(body));
    }
}
