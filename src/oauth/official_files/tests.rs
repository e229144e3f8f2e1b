use super::*;
use std::fs;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        fs::write(dir.path().join(name), body).expect("write");
    }
    dir
}

#[test]
fn oauth_login_with_cached_key() {
    let d = dir_with(&[
        (
            "settings.json",
            r#"{"selectedAuthType":"oauth-iflow","apiKey":"sk-settings","baseUrl":"https://apis.iflow.cn/v1","modelName":"glm-4.7"}"#,
        ),
        (
            "oauth_creds.json",
            r#"{"access_token":"at","refresh_token":"rt","expiry_date":1800000000000,"token_type":"bearer","apiKey":"sk-creds","userId":"7"}"#,
        ),
        (
            "iflow_accounts.json",
            r#"{"active":null,"old":[],"iflowApiKey":"sk-cached"}"#,
        ),
    ]);
    let login = read(d.path()).expect("import");
    assert_eq!(login.auth_type, AuthType::OAuthIflow);
    assert_eq!(login.api_key.expose(), "sk-cached");
    let tokens = login.tokens.expect("tokens");
    assert_eq!(
        tokens.refresh_token.as_ref().map(Secret::expose),
        Some("rt")
    );
    assert_eq!(
        tokens.expires_at.map(|t| t.timestamp_millis()),
        Some(1_800_000_000_000)
    );
}

#[test]
fn plain_key_login_uses_settings() {
    let d = dir_with(&[(
        "settings.json",
        r#"{"selectedAuthType":"iflow","apiKey":"sk-plain","baseUrl":"https://mirror.example/v1/"}"#,
    )]);
    let login = read(&d.path().join("settings.json")).expect("import");
    assert_eq!(login.auth_type, AuthType::Iflow);
    assert_eq!(login.api_key.expose(), "sk-plain");
    assert_eq!(login.base_url, "https://mirror.example/v1");
    assert!(login.tokens.is_none());
}

#[test]
fn incomplete_creds_fall_back_to_the_key_with_a_note() {
    let d = dir_with(&[
        (
            "settings.json",
            r#"{"selectedAuthType":"oauth-iflow","apiKey":"sk-only"}"#,
        ),
        ("oauth_creds.json", r#"{"access_token":"at"}"#),
    ]);
    let login = read(d.path()).expect("import");
    assert_eq!(login.auth_type, AuthType::Iflow);
    assert_eq!(login.notes.len(), 2);
}

#[test]
fn malformed_or_keyless_files_are_clear_errors() {
    let d = dir_with(&[("settings.json", "{ nope")]);
    let e = read(d.path()).expect_err("malformed").to_string();
    assert!(e.contains("settings.json is not valid JSON"), "{e}");

    let d = dir_with(&[
        ("settings.json", r#"{"apiKey":"sk-x"}"#),
        ("oauth_creds.json", "[1,2]"),
    ]);
    let e = read(d.path()).expect_err("malformed").to_string();
    assert!(e.contains("oauth_creds.json"), "{e}");

    let d = dir_with(&[("settings.json", r#"{"modelName":"glm-5"}"#)]);
    assert!(
        read(d.path())
            .expect_err("no key")
            .to_string()
            .contains("no API key")
    );

    let d = dir_with(&[("settings.json", r#"{"apiKey":"oauth-code-123"}"#)]);
    assert!(
        read(d.path())
            .expect_err("code")
            .to_string()
            .contains("not an API key")
    );

    let d = tempfile::tempdir().expect("tempdir");
    assert!(
        read(d.path())
            .expect_err("missing")
            .to_string()
            .contains("no such file")
    );
}
