//! Global options every account command shares: where the data dir comes
//! from (flag, environment, `.env` in the working directory), and that no
//! log level, however verbose, prints a full key or token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{
    OAuthMock, TestEnv, TokenReply, UpstreamMock, account_file, assert_no_secret, chat, uuid_of,
};
use chrono::Duration as Span;

const KEY: &str = "sk-options-00000000000000001";
const NEW_KEY: &str = "sk-options-new-000000000002";
/// A login stores the official base URL: its key must not be the served one.
const LOGIN_KEY: &str = "sk-options-login-0000000003";

#[test]
fn data_dir_comes_from_the_flag_then_the_environment_then_dot_env() {
    let mut env = TestEnv::new();
    let from_dotenv = env.root().join("dotenv-data");
    let from_flag = env.root().join("flag-data");
    std::fs::write(
        env.root().join("cwd/.env"),
        format!("IFLOW_DATA_DIR={}\n", from_dotenv.display()),
    )
    .unwrap();

    // The process environment wins over .env (dotenvy never overrides).
    env.run(&["token", "import", "--api-key", KEY]).assert_ok();
    assert_eq!(env.accounts().len(), 1);
    assert!(!from_dotenv.exists());

    env.run(&[
        "token",
        "import",
        "--api-key",
        KEY,
        "--data-dir",
        from_flag.to_str().unwrap(),
    ])
    .assert_ok();
    assert!(from_flag.join("accounts").is_dir());

    env.unset("IFLOW_DATA_DIR");
    env.run(&["token", "import", "--api-key", KEY]).assert_ok();
    let files = std::fs::read_dir(from_dotenv.join("accounts"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "account file and lock file");
}

#[test]
fn trace_logging_never_prints_keys_or_tokens() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let mut env = TestEnv::new();
    env.set_all(oauth.env()).set("IFLOW_LOG_LEVEL", "trace");
    let a = account_file(KEY, &upstream.base_url("v1"), Some(("opt", Span::days(7))));
    env.write_account(&a);
    oauth.script(
        "rt-opt",
        vec![TokenReply::tokens("at-opt2", "rt-opt2", 86_400, NEW_KEY)],
    );
    oauth.script(
        "code-opt",
        vec![TokenReply::tokens("at-opt3", "rt-opt3", 86_400, LOGIN_KEY)],
    );
    let secrets = [
        KEY, NEW_KEY, LOGIN_KEY, "at-opt", "rt-opt", "at-opt2", "rt-opt2", "at-opt3", "rt-opt3",
    ];

    let refreshed = env.run(&["token", "refresh", &uuid_of(&a)]);
    refreshed.assert_ok();
    assert_no_secret(&refreshed, &secrets);
    let login = env.run_with_stdin(
        &["token", "login", "--no-browser", "--timeout", "10s"],
        "code-opt\n",
    );
    login.assert_ok();
    assert_no_secret(&login, &secrets);
    for args in [&["token", "list"][..], &["token", "list", "--json"][..]] {
        assert_no_secret(env.run(args).assert_ok(), &secrets);
    }

    env.set("IFLOW_WORKERS", "1")
        .set("IFLOW_SHUTDOWN_TIMEOUT", "2s");
    let server = env.serve();
    assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);
    assert_eq!(upstream.keys(), [NEW_KEY]);
    let served = server.terminate();
    assert!(served.status.success(), "{served:#?}");
    assert_no_secret(&served, &secrets);
}

#[test]
fn bad_refresh_settings_are_refused_naming_the_variable() {
    for (var, value) in [
        ("IFLOW_REFRESH_LEAD", "soon"),
        ("IFLOW_REFRESH_INTERVAL", "0s"),
        ("IFLOW_REFRESH_RETRY_MIN", "-1s"),
        ("IFLOW_REFRESH_RETRY_MAX", "5 parsecs"),
    ] {
        let mut env = TestEnv::new();
        env.set(var, value);
        let ran = env.run(&["token", "list"]);
        assert_eq!(ran.status.code(), Some(2), "{var}={value}: {ran:#?}");
        assert!(ran.stderr.contains(&format!("{var}: ")), "{ran:#?}");
        assert!(
            !env.data_dir().exists(),
            "{var}={value} still opened the store"
        );
    }
}

/// A proxy address that cannot be used is refused without repeating its
/// password (clap's own message would quote the whole value).
#[test]
fn a_bad_proxy_address_is_refused_without_its_password() {
    for value in [
        "http://puser:S3cretPass@host:abc",
        "socks5://puser:S3cretPass@",
        "ftp://puser:S3cretPass@host:21",
    ] {
        let mut env = TestEnv::new();
        env.set("IFLOW_UPSTREAM_PROXY", value);
        let ran = env.run(&["token", "list"]);
        assert_eq!(ran.status.code(), Some(2), "{value}: {ran:#?}");
        assert!(ran.stderr.contains("IFLOW_UPSTREAM_PROXY: "), "{ran:#?}");
        assert!(!ran.stderr.contains("S3cretPass"), "{ran:#?}");
        assert!(!ran.stdout.contains("S3cretPass"), "{ran:#?}");
    }
}

/// Settings that are each valid but contradict each other are refused
/// before anything runs, naming both.
#[test]
fn contradicting_settings_are_refused_naming_both() {
    for (vars, command) in [
        (
            [
                ("IFLOW_REFRESH_RETRY_MIN", "10m"),
                ("IFLOW_REFRESH_RETRY_MAX", "1m"),
            ],
            vec!["token", "list"],
        ),
        (
            [("IFLOW_COOLDOWN_BASE", "10m"), ("IFLOW_COOLDOWN_MAX", "1m")],
            vec!["serve", "--port", "0"],
        ),
    ] {
        let mut env = TestEnv::new();
        for (var, value) in vars {
            env.set(var, value);
        }
        let ran = env.run(&command);
        assert_eq!(ran.status.code(), Some(2), "{vars:?}: {ran:#?}");
        for (var, _) in vars {
            assert!(ran.stderr.contains(var), "{var}: {ran:#?}");
        }
        assert!(!env.data_dir().exists(), "{vars:?} still opened the store");
    }
}

/// Values that would be stored and then fail, or break a listing, are
/// refused by the command that takes them, and nothing is written.
#[test]
fn keys_and_names_that_cannot_work_are_refused_at_import() {
    let env = TestEnv::new();
    for args in [
        vec!["token", "import", "--api-key", "sk-split key-0000000001"],
        vec![
            "token",
            "import",
            "--api-key",
            KEY,
            "--base-url",
            "https://user:pw@api.example/v1",
        ],
        vec!["key", "create", "--name", "two\nlines"],
    ] {
        let ran = env.run(&args);
        assert_ne!(ran.status.code(), Some(0), "{args:?}: {ran:#?}");
        assert!(!ran.stderr.contains("pw@"), "{ran:#?}");
        assert!(env.accounts().is_empty(), "{args:?} stored an account");
    }
}
