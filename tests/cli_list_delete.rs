//! `token list` (masked keys, account states) and `token delete`, run against
//! account files written the way the gateway (or iflow-go) writes them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{TestEnv, account_file, assert_no_secret, uuid_of};
use chrono::Duration;
use serde_json::Value;
use std::collections::HashMap;

const BASE: &str = "https://apis.iflow.cn/v1";

/// Five accounts, one per state, with the state `token list` must show.
fn five_states(env: &TestEnv) -> Vec<(String, String, &'static str)> {
    let mut needs_login = account_file(
        "sk-needslogin-00000000004444",
        BASE,
        Some(("d", Duration::hours(1))),
    );
    needs_login["state"] = "needs-login".into();
    let mut key_invalid = account_file("sk-keyinvalid-00000000005555", BASE, None);
    key_invalid["state"] = "key-invalid".into();
    let accounts = [
        (
            account_file(
                "sk-expiring-000000000001111",
                BASE,
                Some(("a", Duration::hours(1))),
            ),
            "expiring",
        ),
        (
            account_file(
                "sk-fresh-000000000000002222",
                BASE,
                Some(("b", Duration::hours(48))),
            ),
            "active",
        ),
        (
            account_file("sk-plain-000000000000003333", BASE, None),
            "active",
        ),
        (needs_login, "needs-login"),
        (key_invalid, "key-invalid"),
    ];
    accounts
        .into_iter()
        .map(|(a, state)| {
            env.write_account(&a);
            (
                uuid_of(&a),
                a["api_key"].as_str().unwrap().to_string(),
                state,
            )
        })
        .collect()
}

fn masked(key: &str) -> String {
    format!("{}…{}", &key[..5], &key[key.len() - 4..])
}

fn list_json(env: &TestEnv) -> HashMap<String, Value> {
    let ran = env.run(&["token", "list", "--json"]);
    ran.assert_ok();
    let rows: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    rows.into_iter()
        .map(|r| (r["uuid"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn list_json_masks_keys_and_reports_each_state() {
    let env = TestEnv::new();
    let accounts = five_states(&env);
    let rows = list_json(&env);
    assert_eq!(rows.len(), 5);
    for (uuid, key, state) in &accounts {
        let row = &rows[uuid];
        assert_eq!(row["state"], *state, "{row:#}");
        assert_eq!(row["api_key"], masked(key), "{row:#}");
    }
    assert_eq!(masked("sk-12345678ab9f"), "sk-12…ab9f");
}

#[test]
fn list_table_shows_masked_keys_and_states_never_full_keys() {
    let env = TestEnv::new();
    let accounts = five_states(&env);
    let ran = env.run(&["token", "list"]);
    ran.assert_ok();
    let keys: Vec<&str> = accounts.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_no_secret(&ran, &keys);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "header and five rows: {ran:#?}");
    assert!(lines[0].starts_with("UUID"), "{ran:#?}");
    for (uuid, key, state) in &accounts {
        let row = lines.iter().find(|l| l.starts_with(uuid.as_str())).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(cells.contains(&masked(key).as_str()), "{row}");
        assert!(cells.contains(state), "{row}");
    }
}

#[test]
fn expiring_follows_the_refresh_lead() {
    let mut env = TestEnv::new();
    let accounts = five_states(&env);
    env.set("IFLOW_REFRESH_LEAD", "30m");
    let rows = list_json(&env);
    assert_eq!(rows[&accounts[0].0]["state"], "active");
    env.set("IFLOW_REFRESH_LEAD", "72h");
    let rows = list_json(&env);
    assert_eq!(rows[&accounts[1].0]["state"], "expiring");
}

#[test]
fn empty_store_lists_how_to_add_an_account() {
    let env = TestEnv::new();
    let ran = env.run(&["token", "list"]);
    ran.assert_ok();
    assert!(ran.stdout.starts_with("no accounts yet"), "{ran:#?}");
    assert_eq!(env.run(&["token", "list", "--json"]).stdout.trim(), "[]");
}

#[test]
fn rewriting_an_account_keeps_unknown_fields() {
    let env = TestEnv::new();
    let key = "sk-plain-000000000000003333";
    let mut a = account_file(key, BASE, None);
    a["custom_note"] = "written by another tool".into();
    a["request_count"] = 7.into();
    env.write_account(&a);
    let ran = env.run(&["token", "import", "--api-key", key]);
    ran.assert_ok();
    assert!(ran.stdout.starts_with("updated account "), "{ran:#?}");
    let after = env.account(&uuid_of(&a));
    assert_eq!(after["custom_note"], "written by another tool");
    assert_eq!(after["request_count"], 7);
    assert_eq!(after["created_at"], a["created_at"]);
    assert_eq!(after["last_used_at"], "0001-01-01T00:00:00Z");
}

#[test]
fn delete_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let env = TestEnv::new();
    let a = account_file("sk-plain-000000000000003333", BASE, None);
    env.write_account(&a);
    let ran = env.run_with_stdin(&["token", "delete", &uuid_of(&a)], "y\n");
    ran.assert_failed();
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");
    assert!(
        ran.stderr.starts_with("error: ") && ran.stderr.contains("--yes"),
        "{ran:#?}"
    );
    assert_eq!(env.accounts().len(), 1);
}

#[test]
fn delete_with_yes_removes_the_file() {
    let env = TestEnv::new();
    let keep = account_file("sk-keep-0000000000000000001", BASE, None);
    let gone = account_file("sk-gone-0000000000000000002", BASE, None);
    env.write_account(&keep);
    env.write_account(&gone);
    let ran = env.run(&["token", "delete", "--yes", &uuid_of(&gone)]);
    ran.assert_ok();
    assert_eq!(
        ran.stdout.trim(),
        format!("deleted account {}", uuid_of(&gone))
    );
    let left: Vec<String> = env.accounts().into_keys().collect();
    assert_eq!(left, vec![uuid_of(&keep)]);

    let again = env.run(&["token", "delete", "-y", &uuid_of(&gone)]);
    again.assert_failed();
    assert!(again.stderr.starts_with("error: no account "), "{again:#?}");
}

/// A file `token list` cannot use gets its own row, state `unreadable`, with
/// the reason; the command still succeeds and the file is not touched. A
/// key sitting in the wrong place of a broken file is not shown.
#[test]
fn broken_account_files_are_listed_as_unreadable_and_left_alone() {
    let env = TestEnv::new();
    let good = account_file("sk-good-0000000000000000001", BASE, None);
    env.write_account(&good);
    let not_json = uuid::Uuid::new_v4().to_string();
    let misplaced = uuid::Uuid::new_v4().to_string();
    let secret = "sk-misplaced-000000000000777";
    let mut wrong = account_file("sk-wrong-0000000000000000002", BASE, None);
    wrong["uuid"] = misplaced.clone().into();
    wrong["request_count"] = secret.into();
    let files = [
        (not_json.clone(), b"{ not json".to_vec()),
        (
            misplaced.clone(),
            serde_json::to_vec_pretty(&wrong).unwrap(),
        ),
    ];
    for (uuid, bytes) in &files {
        std::fs::write(env.accounts_dir().join(format!("{uuid}.json")), bytes).unwrap();
    }

    let ran = env.run(&["token", "list", "--json"]);
    ran.assert_ok();
    assert_no_secret(&ran, &[secret]);
    let rows: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{ran:#?}");
    let row = |uuid: &str| rows.iter().find(|r| r["uuid"] == uuid).unwrap().clone();
    assert_eq!(row(&uuid_of(&good))["state"], "active");
    for (uuid, _) in &files {
        let r = row(uuid);
        assert_eq!(r["state"], "unreadable", "{r:#}");
        assert!(r["api_key"].is_null() && r["auth_type"].is_null(), "{r:#}");
        assert!(!r["error"].as_str().unwrap().is_empty(), "{r:#}");
    }
    assert!(
        row(&not_json)["error"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{ran:#?}"
    );
    assert!(
        row(&misplaced)["error"]
            .as_str()
            .unwrap()
            .contains("invalid type: string"),
        "{ran:#?}"
    );

    let table = env.run(&["token", "list"]);
    table.assert_ok();
    assert_no_secret(&table, &[secret]);
    assert_eq!(table.stdout.lines().count(), 4, "{table:#?}");
    for (uuid, _) in &files {
        let line = table
            .stdout
            .lines()
            .find(|l| l.starts_with(uuid.as_str()))
            .unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], "unreadable", "{line}");
        assert!(cells.len() > 2, "no reason in {line}");
    }
    for (uuid, bytes) in &files {
        let now = std::fs::read(env.accounts_dir().join(format!("{uuid}.json"))).unwrap();
        assert_eq!(&now, bytes, "{uuid} was changed");
    }
}

#[test]
fn only_broken_files_still_make_a_table() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.accounts_dir()).unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    std::fs::write(env.accounts_dir().join(format!("{uuid}.json")), "").unwrap();
    let ran = env.run(&["token", "list"]);
    ran.assert_ok();
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{ran:#?}");
    assert!(lines[0].starts_with("UUID"), "{ran:#?}");
    assert!(
        lines[1].starts_with(&uuid) && lines[1].contains("unreadable"),
        "{ran:#?}"
    );
}
