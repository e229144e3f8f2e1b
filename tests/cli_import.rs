//! `token import`: the official CLI's files (settings.json, oauth_creds.json,
//! iflow_accounts.json) and `--api-key`, checked through the account files
//! written and the command's output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{TestEnv, assert_no_secret, snapshot};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SETTINGS_KEY: &str = "sk-settings-0000000000000001";
const SEARCH_KEY: &str = "sk-search-00000000000000002";
const CREDS_KEY: &str = "sk-creds-000000000000000003";
const ACCOUNTS_KEY: &str = "sk-accounts-0000000000000ab9f";
/// 2030-01-01T00:00:00Z in epoch milliseconds.
const EXPIRY_MS: i64 = 1_893_456_000_000;

/// Writes the official CLI's files into `dir`; `None` leaves one out.
fn official(dir: &Path, settings: Option<&str>, creds: Option<&str>, accounts: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("settings.json", settings),
        ("oauth_creds.json", creds),
        ("iflow_accounts.json", accounts),
    ] {
        if let Some(text) = text {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
}

fn oauth_settings() -> String {
    format!(
        r#"{{"selectedAuthType":"oauth-iflow","apiKey":"{SETTINGS_KEY}","searchApiKey":"{SEARCH_KEY}","baseUrl":"https://ignored.example/v1","modelName":"glm-4.6"}}"#
    )
}

fn creds(api_key: Option<&str>) -> String {
    let key = api_key.map_or(String::new(), |k| format!(r#","apiKey":"{k}""#));
    format!(
        r#"{{"access_token":"at-1","refresh_token":"rt-1","expiry_date":{EXPIRY_MS},"token_type":"bearer","scope":"read"{key}}}"#
    )
}

fn accounts_file() -> String {
    format!(r#"{{"active":null,"old":[],"iflowApiKey":"{ACCOUNTS_KEY}"}}"#)
}

fn only_account(env: &TestEnv) -> serde_json::Value {
    let accounts = env.accounts();
    assert_eq!(accounts.len(), 1, "{accounts:#?}");
    accounts.into_values().next().unwrap()
}

#[test]
fn oauth_login_is_imported_with_tokens_and_the_cached_account_key() {
    let env = TestEnv::new();
    let dir = env.root().join("official");
    official(
        &dir,
        Some(&oauth_settings()),
        Some(&creds(Some(CREDS_KEY))),
        Some(&accounts_file()),
    );

    let ran = env.run(&["token", "import", dir.to_str().unwrap()]);
    ran.assert_ok();
    assert_no_secret(
        &ran,
        &[ACCOUNTS_KEY, CREDS_KEY, SETTINGS_KEY, "at-1", "rt-1"],
    );
    assert!(ran.stdout.contains("sk-ac…ab9f"), "{ran:#?}");

    let a = only_account(&env);
    let uuid = a["uuid"].as_str().unwrap();
    assert_eq!(ran.account_uuid(), uuid);
    assert_eq!(a["auth_type"], "oauth-iflow");
    assert_eq!(a["api_key"], ACCOUNTS_KEY);
    assert_eq!(a["base_url"], "https://apis.iflow.cn/v1");
    assert_eq!(a["oauth_access_token"], "at-1");
    assert_eq!(a["oauth_refresh_token"], "rt-1");
    assert_eq!(a["oauth_expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(a["last_used_at"], "0001-01-01T00:00:00Z");
    assert_eq!(a["request_count"], 0);
    assert!(a.get("state").is_none(), "{a:#}");
    for field in ["created_at", "updated_at"] {
        let t = a[field].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field}: {t}"
        );
    }

    let file = env.accounts_dir().join(format!("{uuid}.json"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "account file mode {mode:o}");
    let dir_mode = std::fs::metadata(env.accounts_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "accounts dir mode {dir_mode:o}");
}

#[test]
fn oauth_key_falls_back_to_creds_then_settings_then_search_key() {
    let no_keys = r#"{"selectedAuthType":"oauth-iflow"}"#.to_string();
    let search_only =
        format!(r#"{{"selectedAuthType":"oauth-iflow","searchApiKey":"{SEARCH_KEY}"}}"#);
    let cases = [
        (oauth_settings(), Some(creds(Some(CREDS_KEY))), CREDS_KEY),
        (oauth_settings(), Some(creds(None)), SETTINGS_KEY),
        (search_only, Some(creds(None)), SEARCH_KEY),
        (no_keys, Some(creds(Some(CREDS_KEY))), CREDS_KEY),
    ];
    for (settings, creds_text, expected) in cases {
        let env = TestEnv::new();
        let dir = env.root().join("official");
        official(&dir, Some(&settings), creds_text.as_deref(), None);
        env.run(&["token", "import", dir.to_str().unwrap()])
            .assert_ok();
        let a = only_account(&env);
        assert_eq!(a["api_key"], expected, "settings {settings}");
        assert_eq!(a["auth_type"], "oauth-iflow");
        assert_eq!(a["oauth_refresh_token"], "rt-1");
    }
}

#[test]
fn plain_key_login_takes_settings_key_and_base_url_and_no_tokens() {
    let env = TestEnv::new();
    let dir = env.root().join("official");
    let settings = format!(
        r#"{{"selectedAuthType":"iflow","apiKey":"{SETTINGS_KEY}","baseUrl":"https://mirror.example/v1/"}}"#
    );
    // Stale OAuth files beside a plain-key login must not win.
    official(
        &dir,
        Some(&settings),
        Some(&creds(Some(CREDS_KEY))),
        Some(&accounts_file()),
    );

    let ran = env.run(&[
        "token",
        "import",
        dir.join("settings.json").to_str().unwrap(),
    ]);
    ran.assert_ok();
    let a = only_account(&env);
    assert_eq!(a["auth_type"], "iflow");
    assert_eq!(a["api_key"], SETTINGS_KEY);
    assert_eq!(a["base_url"], "https://mirror.example/v1");
    assert!(a.get("oauth_access_token").is_none(), "{a:#}");
    assert!(a.get("oauth_refresh_token").is_none(), "{a:#}");
    assert_eq!(a["oauth_expires_at"], "0001-01-01T00:00:00Z");
}

#[test]
fn default_path_is_iflow_home_else_home_dot_iflow() {
    let mut env = TestEnv::new();
    let plain = |key: &str| format!(r#"{{"selectedAuthType":"iflow","apiKey":"{key}"}}"#);
    official(
        &env.home().join(".iflow"),
        Some(&plain(SETTINGS_KEY)),
        None,
        None,
    );
    env.run(&["token", "import"]).assert_ok();
    assert_eq!(only_account(&env)["api_key"], SETTINGS_KEY);

    let iflow_home = env.root().join("iflow-home");
    official(&iflow_home, Some(&plain(SEARCH_KEY)), None, None);
    env.set("IFLOW_HOME", iflow_home.to_str().unwrap());
    env.run(&["token", "import"]).assert_ok();
    let keys: Vec<_> = env
        .accounts()
        .values()
        .map(|a| a["api_key"].clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&SEARCH_KEY.into()), "{keys:?}");
}

#[test]
fn importing_the_same_key_twice_updates_one_account() {
    let env = TestEnv::new();
    let dir = env.root().join("official");
    official(
        &dir,
        Some(&oauth_settings()),
        Some(&creds(None)),
        Some(&accounts_file()),
    );
    let first = env.run(&["token", "import", dir.to_str().unwrap()]);
    first.assert_ok();
    assert!(first.stdout.starts_with("added account "), "{first:#?}");

    // A newer login of the same key: new tokens replace the old ones.
    let newer = creds(None).replace("at-1", "at-2").replace("rt-1", "rt-2");
    official(&dir, None, Some(&newer), None);
    let second = env.run(&["token", "import", dir.to_str().unwrap()]);
    second.assert_ok();
    assert!(second.stdout.starts_with("updated account "), "{second:#?}");
    assert_eq!(second.account_uuid(), first.account_uuid());
    let a = only_account(&env);
    assert_eq!(a["oauth_refresh_token"], "rt-2");

    let key_args = ["token", "import", "--api-key", ACCOUNTS_KEY];
    let third = env.run(&key_args);
    third.assert_ok();
    assert_eq!(third.account_uuid(), first.account_uuid());
    assert_eq!(env.accounts().len(), 1);
}

#[test]
fn api_key_import_sets_kind_and_trims_base_url() {
    let env = TestEnv::new();
    let key = "sk-openai-0000000000000000042";
    let ran = env.run(&[
        "token",
        "import",
        "--api-key",
        key,
        "--base-url",
        "http://127.0.0.1:9/v1/",
        "--kind",
        "openai",
    ]);
    ran.assert_ok();
    assert_no_secret(&ran, &[key]);
    let a = only_account(&env);
    assert_eq!(a["auth_type"], "openai");
    assert_eq!(a["base_url"], "http://127.0.0.1:9/v1");
    assert_eq!(a["api_key"], key);

    let bad_url = env.run(&["token", "import", "--api-key", key, "--base-url", "ftp://x"]);
    bad_url.assert_failed();
    assert!(
        bad_url.stderr.starts_with("error: --base-url"),
        "{bad_url:#?}"
    );
    let bad_kind = env.run(&["token", "import", "--api-key", key, "--kind", "cookie"]);
    bad_kind.assert_failed();
    assert_eq!(env.accounts().len(), 1);
}

/// A broken official login and the words its one error line must contain.
struct Broken {
    expected: &'static str,
    files: [Option<String>; 3],
}

impl Broken {
    fn new(expected: &'static str, settings: Option<String>, creds: Option<String>) -> Self {
        Self {
            expected,
            files: [settings, creds, None],
        }
    }

    /// Writes the files and runs the import, which must be refused.
    fn refused(&self, env: &TestEnv) {
        let dir = env.root().join("official");
        let [settings, creds, accounts] = &self.files;
        official(
            &dir,
            settings.as_deref(),
            creds.as_deref(),
            accounts.as_deref(),
        );
        let ran = env.run(&["token", "import", dir.to_str().unwrap()]);
        ran.assert_failed();
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected: {ran:#?}");
        assert!(lines[0].starts_with("error: "), "{ran:#?}");
        assert!(
            lines[0].contains(self.expected),
            "{:?}: {ran:#?}",
            self.files
        );
        assert_eq!(ran.stdout, "", "{ran:#?}");
        assert_no_secret(&ran, &[CREDS_KEY, SETTINGS_KEY]);
    }
}

fn broken_logins() -> Vec<Broken> {
    let plain_no_key = r#"{"selectedAuthType":"iflow"}"#.to_string();
    let not_sk = r#"{"selectedAuthType":"iflow","apiKey":"oauth-code-123"}"#.to_string();
    let mut bad_accounts = Broken::new("iflow_accounts.json", Some(oauth_settings()), None);
    bad_accounts.files[2] = Some("nope".into());
    vec![
        Broken::new("settings.json", Some("{\"apiKey\": ".into()), None),
        Broken::new("settings.json", Some("[1,2]".into()), None),
        Broken::new(
            "oauth_creds.json",
            Some(oauth_settings()),
            Some("{oops".into()),
        ),
        bad_accounts,
        Broken::new("no API key", Some(plain_no_key), None),
        Broken::new("not an API key", Some(not_sk), None),
        Broken::new("settings.json", None, Some(creds(Some(CREDS_KEY)))),
    ]
}

#[test]
fn failed_import_leaves_existing_accounts_untouched() {
    for broken in broken_logins() {
        let env = TestEnv::new();
        env.run(&["token", "import", "--api-key", ACCOUNTS_KEY])
            .assert_ok();
        let before = snapshot(&env.data_dir());
        broken.refused(&env);
        assert_eq!(
            snapshot(&env.data_dir()),
            before,
            "data dir changed: {:?}",
            broken.files
        );
    }
}

#[test]
fn failed_import_creates_no_data_dir() {
    for broken in broken_logins() {
        let env = TestEnv::new();
        broken.refused(&env);
        let left = snapshot(env.root());
        assert!(
            !env.data_dir().exists(),
            "a refused import created {left:?}"
        );
    }
}

#[test]
fn incomplete_oauth_creds_import_the_key_only_with_a_note() {
    let env = TestEnv::new();
    let dir = env.root().join("official");
    let partial = format!(r#"{{"access_token":"at-1","apiKey":"{CREDS_KEY}"}}"#);
    official(&dir, Some(&oauth_settings()), Some(&partial), None);
    let ran = env.run(&["token", "import", dir.to_str().unwrap()]);
    ran.assert_ok();
    assert!(
        ran.stderr.contains("note: oauth_creds.json lacks access_token, refresh_token or expiry_date; imported the key only"),
        "{ran:#?}"
    );
    let a = only_account(&env);
    assert_eq!(a["auth_type"], "iflow");
    assert_eq!(a["api_key"], SETTINGS_KEY);
    assert!(a.get("oauth_access_token").is_none(), "{a:#}");
}

/// A key found only in an account file that cannot be parsed: a new account
/// would be a second one for the same key, so the import is refused and the
/// broken file is left exactly as it was.
#[test]
fn a_key_held_only_by_a_broken_account_file_is_not_imported_again() {
    let env = TestEnv::new();
    let broken_uuid = uuid::Uuid::new_v4().to_string();
    let broken = env.accounts_dir().join(format!("{broken_uuid}.json"));
    std::fs::create_dir_all(env.accounts_dir()).unwrap();
    let bytes = format!(
        "{{\n  \"uuid\": \"{broken_uuid}\",\n  \"api_key\": \"{ACCOUNTS_KEY}\",\n  \"base_url\": "
    );
    std::fs::write(&broken, &bytes).unwrap();
    let dir = env.root().join("official");
    official(
        &dir,
        Some(&oauth_settings()),
        Some(&creds(None)),
        Some(&accounts_file()),
    );
    let json_files = || {
        let mut names: Vec<String> = std::fs::read_dir(env.accounts_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
    };

    let by_key = env.run(&["token", "import", "--api-key", ACCOUNTS_KEY]);
    let by_files = env.run(&["token", "import", dir.to_str().unwrap()]);
    for ran in [&by_key, &by_files] {
        ran.assert_failed();
        // The registry's scan also logs the skipped file, as for every command.
        let lines: Vec<&str> = ran
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(lines.len(), 1, "one error line expected: {ran:#?}");
        assert!(ran.stderr.ends_with(&format!("{}\n", lines[0])), "{ran:#?}");
        assert!(
            lines[0].starts_with("error: account file ")
                && lines[0].contains(&format!("accounts/{}….json", &broken_uuid[..8]))
                && !lines[0].contains(&broken_uuid)
                && lines[0].contains("cannot be read"),
            "{ran:#?}"
        );
        assert_eq!(ran.stdout, "", "{ran:#?}");
        assert_no_secret(ran, &[ACCOUNTS_KEY, "at-1", "rt-1"]);
    }
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), bytes);
    assert_eq!(json_files(), [format!("{broken_uuid}.json")]);

    // Another key still imports.
    env.run(&["token", "import", "--api-key", SEARCH_KEY])
        .assert_ok();
}
