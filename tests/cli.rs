//! The command line: `token import/list`, `version` and configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::gateway::{command, import, run};
use common::{API_KEY, snapshot};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const MASKED: &str = "sk-te…cdef";

fn cli(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = command(dir, dir);
    cmd.args(args);
    run(cmd)
}

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn import_args<'a>(key: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["token", "import", "--api-key", key, "--base-url", url]
}

#[test]
fn import_prints_the_account_and_writes_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(dir.path(), &import_args(API_KEY, "http://127.0.0.1:9/v1/"));
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stderr}");
    let uuid = stdout.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(
        stdout,
        format!(
            "added account {uuid} (iflow, key {MASKED}, http://127.0.0.1:9/v1)\nuse it with: Authorization: Bearer {uuid}\n"
        )
    );
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));
    let accounts = dir.path().join("accounts");
    let file = accounts.join(format!("{uuid}.json"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&accounts).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let saved = common::account_file(dir.path(), &uuid);
    assert_eq!(saved["api_key"], API_KEY);
    assert_eq!(saved["auth_type"], "iflow");
    assert_eq!(saved["base_url"], "http://127.0.0.1:9/v1");
    assert_eq!(saved["request_count"], 0);
}

#[test]
fn importing_the_same_key_again_updates_the_same_account() {
    let dir = tempfile::tempdir().unwrap();
    let first = import(dir.path(), API_KEY, "http://127.0.0.1:9/v1", "iflow");
    let o = cli(
        dir.path(),
        &[
            "token",
            "import",
            "--api-key",
            API_KEY,
            "--base-url",
            "http://127.0.0.1:10/v1",
            "--kind",
            "openai",
        ],
    );
    let (stdout, _) = out(&o);
    assert!(
        stdout.starts_with(&format!(
            "updated account {first} (openai, key {MASKED}, http://127.0.0.1:10/v1)\n"
        )),
        "{stdout}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("accounts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        common::account_file(dir.path(), &first)["base_url"],
        "http://127.0.0.1:10/v1"
    );
}

#[test]
fn list_and_list_json_show_masked_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = import(dir.path(), API_KEY, "http://127.0.0.1:9/v1", "iflow");
    let table = cli(dir.path(), &["token", "list"]);
    let (stdout, stderr) = out(&table);
    assert!(table.status.success());
    assert!(
        stdout.contains(&uuid) && stdout.contains(MASKED),
        "{stdout}"
    );
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));

    let json = cli(dir.path(), &["token", "list", "--json"]);
    let (stdout, stderr) = out(&json);
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["uuid"], uuid.as_str());
    assert_eq!(rows[0]["api_key"], MASKED);
    assert_eq!(rows[0]["state"], "active");
}

#[test]
fn a_bad_base_url_fails_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["ftp://example.com/v1", "not a url"] {
        let o = cli(dir.path(), &import_args(API_KEY, url));
        let (stdout, stderr) = out(&o);
        assert!(!o.status.success());
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("--base-url"),
            "{stderr}"
        );
        assert!(!stderr.contains(API_KEY));
    }
    let files: Vec<_> = snapshot(dir.path())
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn an_iflow_key_without_sk_is_refused_but_another_providers_key_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        dir.path(),
        &import_args("abc-not-iflow", "http://127.0.0.1:9/v1"),
    );
    let (stdout, stderr) = out(&o);
    assert!(!o.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("starts with sk-"),
        "{stderr}"
    );
    assert!(!stderr.contains("abc-not-iflow"), "{stderr}");
    assert!(!dir.path().join("accounts").exists());

    let mut args = import_args("abc-not-iflow", "http://127.0.0.1:9/v1");
    args.extend(["--kind", "openai"]);
    let o = cli(dir.path(), &args);
    assert!(o.status.success(), "{}", out(&o).1);
}

#[test]
fn account_commands_log_nothing_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = |args: &[&str]| {
        let mut cmd = command(dir.path(), dir.path());
        cmd.env_remove("IFLOW_LOG_LEVEL").args(args);
        let o = run(cmd);
        let (stdout, stderr) = out(&o);
        assert!(o.status.success(), "{args:?}: {stderr}");
        // At info these commands log what the store did (for example
        // "credentials changed"); their result is on stdout.
        assert_eq!(stderr, "", "{args:?} logged at the default level");
        stdout
    };
    let imported = quiet(&import_args(API_KEY, "http://127.0.0.1:9/v1"));
    let uuid = imported.split_whitespace().nth(2).unwrap().to_string();
    quiet(&import_args(API_KEY, "http://127.0.0.1:8/v1"));
    quiet(&["token", "list"]);
    quiet(&["token", "delete", "--yes", &uuid]);
}

#[test]
fn version_prints_the_package_version() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(dir.path(), &["version"]);
    assert!(o.status.success());
    assert_eq!(
        out(&o).0,
        format!("iflow-actix {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn invalid_settings_stop_serve_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("IFLOW_PORT", "abc"),
        ("IFLOW_CONCURRENCY", "0"),
        ("IFLOW_UPSTREAM_TIMEOUT", "soon"),
        ("IFLOW_MAX_BODY_BYTES", "12XB"),
        ("IFLOW_UPSTREAM_PROXY", "ftp://127.0.0.1:1"),
        ("IFLOW_PRESERVE_REASONING_CONTENT", "maybe"),
        ("IFLOW_LOG_LEVEL", "loud"),
        ("IFLOW_ALIGN_MODE", "unofficial"),
        ("IFLOW_CLIENT_STALL_TIMEOUT", "never"),
        ("IFLOW_COOLDOWN_MAX", "30d"),
        ("IFLOW_FAILOVER_DEADLINE", "-1"),
    ];
    for (var, value) in cases {
        let mut cmd = command(dir.path(), dir.path());
        cmd.env(var, value).args(["serve", "--host", "127.0.0.1"]);
        let o = run(cmd);
        let stderr = out(&o).1;
        assert!(!o.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
}

#[test]
fn a_busy_port_stops_serve_with_one_line_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = command(dir.path(), dir.path());
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port]);
    let o = run(cmd);
    let stderr = out(&o).1;
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_data_dir_that_is_a_file_stops_every_command_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    for args in [
        &["serve", "--host", "127.0.0.1"][..],
        &["token", "list"][..],
    ] {
        let mut cmd = command(dir.path(), &file);
        cmd.args(args);
        let o = run(cmd);
        assert!(!o.status.success(), "{args:?} accepted a file as data dir");
        assert!(out(&o).1.contains("IFLOW_DATA_DIR"), "{}", out(&o).1);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn settings_are_read_from_dot_env_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "IFLOW_CONCURRENCY=0\n").unwrap();
    let mut cmd = command(dir.path(), dir.path());
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"]);
    let o = run(cmd);
    assert!(!o.status.success());
    assert!(out(&o).1.contains("IFLOW_CONCURRENCY"));
}

/// A data folder the first import creates is private, like its
/// subfolders (a folder made beforehand keeps its own mode).
#[test]
fn a_data_folder_made_by_the_first_import_is_private() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("new/data");
    let mut cmd = command(root.path(), &data);
    cmd.args(import_args(API_KEY, "http://127.0.0.1:9/v1/"));
    let o = run(cmd);
    assert!(o.status.success(), "{}", out(&o).1);
    for made in [root.path().join("new"), data.clone(), data.join("accounts")] {
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", made.display());
    }
}
