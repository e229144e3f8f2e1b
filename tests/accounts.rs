//! Accounts as `serve` sees them: files it cannot use are skipped and left
//! alone; accounts imported or changed by the CLI while it runs are picked up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, get};
use common::gateway::{Gateway, import};
use common::mock::Mock;
use common::{API_KEY, assert_error, secs, snapshot, user_body};

#[test]
fn unusable_account_files_are_skipped_logged_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mock = common::mock::Mock::start();
    let good = import(dir.path(), API_KEY, &mock.base_url(), "iflow");
    let accounts = dir.path().join("accounts");
    let broken = uuid::Uuid::new_v4().to_string();
    let cookie = uuid::Uuid::new_v4().to_string();
    std::fs::write(accounts.join(format!("{broken}.json")), "{ not json").unwrap();
    let cookie_json = format!(
        r#"{{"uuid":"{cookie}","api_key":"sk-cookie-0000000000","base_url":"{}","auth_type":"cookie"}}"#,
        mock.base_url()
    );
    std::fs::write(accounts.join(format!("{cookie}.json")), &cookie_json).unwrap();
    // The two unusable files, whatever else the server writes meanwhile.
    let bad_files = |snap: std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>| {
        snap.into_iter()
            .filter(|(p, _)| {
                let p = p.to_string_lossy();
                p.contains(broken.as_str()) || p.contains(cookie.as_str())
            })
            .collect::<Vec<_>>()
    };
    let before = bad_files(snapshot(dir.path()));

    let mut gw = Gateway::start(dir.path(), &[]);
    let log = gw.log();
    assert!(log.contains("(1 accounts"), "{log}");
    for id in [&broken, &cookie] {
        assert!(
            log.lines().any(|l| l.contains("skipping account file")
                && l.contains(&id[..8])
                && !l.contains(id.as_str())),
            "{id}: {log}"
        );
    }
    assert_eq!(chat(gw.addr, &good, &user_body("glm-5", "hi")).status, 200);
    assert_error(
        &chat(gw.addr, &cookie, &user_body("glm-5", "hi")),
        401,
        "authentication_error",
        "invalid_api_key",
    );
    assert_eq!(get(gw.addr, "/health", None).json()["accounts"], 1);
    assert!(
        gw.terminate(secs(10))
            .is_some_and(|(exit, _)| exit.success())
    );
    assert_eq!(bad_files(snapshot(dir.path())), before);
}

#[test]
fn an_account_imported_while_serving_is_usable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mock = common::mock::Mock::start();
    // A long rescan interval: only the on-demand lookup can find the account.
    let gw = Gateway::start(dir.path(), &[("IFLOW_STORE_RESCAN_INTERVAL", "1h")]);
    let uuid = import(dir.path(), API_KEY, &mock.base_url(), "iflow");
    let resp = chat(gw.addr, &uuid, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    common::iflow::assert_signed(&mock.last_request(), API_KEY);
}

#[test]
fn reimporting_a_key_with_a_new_base_url_moves_the_account_and_keeps_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Mock::start(), Mock::start());
    let uuid = import(dir.path(), API_KEY, &old.base_url(), "iflow");
    let gw = Gateway::start(dir.path(), &[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    assert_eq!(chat(gw.addr, &uuid, &user_body("glm-5", "hi")).status, 200);

    assert_eq!(import(dir.path(), API_KEY, &new.base_url(), "iflow"), uuid);
    assert!(
        gw.wait_log(secs(5), |l| l.contains("credentials changed")),
        "{}",
        gw.log()
    );
    assert_eq!(chat(gw.addr, &uuid, &user_body("glm-5", "hi")).status, 200);
    assert_eq!(old.requests().len(), 1);
    let (before, after) = (old.last_request(), new.last_request());
    common::iflow::assert_signed(&after, API_KEY);
    assert_eq!(before.header("session-id"), after.header("session-id"));
}
