use super::*;
use crate::secret::Secret;
use chrono::Utc;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn store() -> (tempfile::TempDir, AccountStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccountStore::open(dir.path()).expect("open");
    (dir, store)
}

fn account(key: &str) -> Account {
    Account::new(
        Secret::new(key),
        DEFAULT_IFLOW_BASE_URL.into(),
        AuthType::Iflow,
        Utc::now(),
    )
}

#[test]
fn create_writes_mode_0600_json_and_scan_reads_it_back() {
    let (_d, store) = store();
    let a = account("sk-aaaaaaaaaaaaaaaa");
    store.create(&a).expect("create");
    let meta = fs::metadata(store.path_of(&a.uuid)).expect("file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let scan = store.scan().expect("scan");
    assert_eq!(scan.accounts, vec![a]);
    assert!(scan.problems.is_empty());
}

#[test]
fn broken_files_are_reported_and_never_rewritten() {
    let (_d, store) = store();
    let good = account("sk-good-good-good-good");
    store.create(&good).expect("create");
    let broken_uuid = "0b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f";
    let broken = store.path_of(broken_uuid);
    fs::write(&broken, b"{ not json").expect("write");
    let unknown = store.path_of("1b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f");
    let text = String::from_utf8(good.to_json())
        .expect("utf8")
        .replace(&good.uuid, "1b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f")
        .replace("\"iflow\"", "\"cookie\"");
    fs::write(&unknown, &text).expect("write");

    let scan = store.scan().expect("scan");
    assert_eq!(scan.accounts.len(), 1);
    assert_eq!(scan.problems.len(), 2);
    assert!(
        scan.problems
            .iter()
            .any(|(p, r)| p == &unknown && r.contains("unknown auth_type"))
    );

    let err = store
        .modify(broken_uuid, |a| a.request_count += 1)
        .expect_err("broken file must not be modified");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(fs::read(&broken).expect("read"), b"{ not json");
    assert_eq!(fs::read_to_string(&unknown).expect("read"), text);
}

#[test]
fn modify_applies_to_the_disk_version() {
    let (_d, store) = store();
    let a = account("sk-modify-modify-modify");
    store.create(&a).expect("create");
    // Another process bumps the counter behind our back...
    let other = AccountStore::open(store.dir().parent().expect("parent")).expect("open");
    other
        .modify(&a.uuid, |x| x.request_count += 5)
        .expect("other");
    // ...and our delta lands on top of it, not on our stale copy.
    let after = store
        .modify(&a.uuid, |x| x.request_count += 2)
        .expect("modify");
    assert_eq!(after.request_count, 7);
    assert_eq!(
        store.load(&a.uuid).expect("load").map(|x| x.request_count),
        Some(7)
    );
}

#[test]
fn upsert_by_api_key_updates_instead_of_duplicating() {
    let (_d, store) = store();
    let (first, created) = store
        .upsert_by_api_key(account("sk-same-same-same-same"), |_| {})
        .expect("first");
    assert!(created);
    let (second, created) = store
        .upsert_by_api_key(account("sk-same-same-same-same"), |a| {
            a.base_url = "https://mirror.example/v1".into()
        })
        .expect("second");
    assert!(!created);
    assert_eq!(first.uuid, second.uuid);
    let scan = store.scan().expect("scan");
    assert_eq!(scan.accounts.len(), 1);
    assert_eq!(scan.accounts[0].base_url, "https://mirror.example/v1");
}

#[test]
fn delete_removes_only_valid_uuids() {
    let (_d, store) = store();
    let a = account("sk-delete-delete-delete");
    store.create(&a).expect("create");
    assert!(!store.delete("../../etc/passwd").expect("delete"));
    assert!(store.delete(&a.uuid).expect("delete"));
    assert!(!store.delete(&a.uuid).expect("delete again"));
    assert!(store.scan().expect("scan").accounts.is_empty());
}

#[test]
fn no_temp_files_are_left_behind() {
    let (_d, store) = store();
    let a = account("sk-temp-temp-temp-temp");
    store.create(&a).expect("create");
    for _ in 0..20 {
        store
            .modify(&a.uuid, |x| x.request_count += 1)
            .expect("modify");
    }
    let names: Vec<String> = fs::read_dir(store.dir())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(names, vec![format!("{}.json", a.uuid)]);
}

#[test]
fn concurrent_modifies_lose_no_update() {
    let (_d, store) = store();
    let a = account("sk-race-race-race-race");
    store.create(&a).expect("create");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let uuid = a.uuid.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    store
                        .modify(&uuid, |x| x.request_count += 1)
                        .expect("modify");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    let count = store.load(&a.uuid).expect("load").map(|x| x.request_count);
    assert_eq!(count, Some(100));
}

#[test]
fn refresh_lock_is_exclusive_visible_and_leaves_no_file() {
    let (_d, store) = store();
    let a = account("sk-lock-lock-lock-lock");
    store.create(&a).expect("create");
    assert!(!store.refreshing(&a.uuid));
    let held = store
        .refresh_lock(&a.uuid, Duration::ZERO)
        .expect("lock")
        .expect("free");
    assert!(!held.waited);
    assert!(store.refreshing(&a.uuid));
    // Another holder (another process, or here another open file) waits
    // the bounded time and gives up.
    let other = AccountStore::open(store.dir().parent().expect("parent")).expect("open");
    let started = std::time::Instant::now();
    assert!(
        other
            .refresh_lock(&a.uuid, Duration::from_millis(200))
            .expect("try")
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(held);
    assert!(!store.refreshing(&a.uuid));
    let names: Vec<String> = fs::read_dir(store.dir())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(names, vec![format!("{}.json", a.uuid)]);
    assert_eq!(store.scan().expect("scan").accounts.len(), 1);
}

#[test]
fn a_waiting_refresh_gets_the_lock_when_the_holder_lets_go() {
    let (_d, store) = store();
    let a = account("sk-wait-wait-wait-wait");
    store.create(&a).expect("create");
    let held = store
        .refresh_lock(&a.uuid, Duration::ZERO)
        .expect("lock")
        .expect("free");
    let (waiter, uuid) = (store.clone(), a.uuid.clone());
    let second = std::thread::spawn(move || {
        waiter
            .refresh_lock(&uuid, Duration::from_secs(10))
            .map(|l| l.map(|l| l.waited))
    });
    std::thread::sleep(Duration::from_millis(150));
    drop(held);
    assert_eq!(second.join().expect("join").expect("lock"), Some(true));
    assert!(store.refresh_lock("../etc/passwd", Duration::ZERO).is_err());
}

#[test]
fn modify_if_writes_only_when_asked() {
    let (_d, store) = store();
    let a = account("sk-cas-cas-cas-cas-cas");
    store.create(&a).expect("create");
    let before = fs::read(store.path_of(&a.uuid)).expect("read");
    let kept = store
        .modify_if(&a.uuid, |x| {
            x.request_count = 99;
            false
        })
        .expect("modify_if");
    assert_eq!(kept.request_count, 0);
    assert_eq!(fs::read(store.path_of(&a.uuid)).expect("read"), before);
    let changed = store
        .modify_if(&a.uuid, |x| {
            x.request_count = 5;
            true
        })
        .expect("modify_if");
    assert_eq!(changed.request_count, 5);
    assert_eq!(
        store.load(&a.uuid).expect("load").map(|x| x.request_count),
        Some(5)
    );
}

#[test]
fn import_refuses_a_key_that_only_a_broken_file_holds() {
    let (_d, store) = store();
    let key = "sk-broken-broken-broken-1";
    let broken = store.path_of("2b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f");
    fs::create_dir_all(store.dir()).expect("dir");
    let bytes = format!("{{\"uuid\": \"x\", \"api_key\": \"{key}\", ").into_bytes();
    fs::write(&broken, &bytes).expect("write");

    let err = store
        .upsert_by_api_key(account(key), |_| {})
        .expect_err("duplicate of the broken file");
    assert!(matches!(err, StoreError::KeyInBrokenFile { .. }), "{err}");
    let text = err.to_string();
    // Named as logs name accounts: enough to find the file, not the uuid.
    assert!(text.contains("accounts/2b9c6f1e….json"), "{text}");
    assert!(!text.contains("2b9c6f1e-2d3a"), "{text}");
    assert!(!text.contains(key), "{text}");
    assert_eq!(fs::read(&broken).expect("read"), bytes);
    assert!(store.scan().expect("scan").accounts.is_empty());

    // Another key is not held up by the broken file.
    let (_, created) = store
        .upsert_by_api_key(account("sk-other-other-other-2"), |_| {})
        .expect("other key");
    assert!(created);
}

#[test]
fn paths_in_messages_name_accounts_by_their_short_id_only() {
    let uuid = "bb8243dd-211e-46a8-ba94-d46ebed2de86";
    let shown = |name: &str| super::shown(&Path::new("/data/accounts").join(name));
    assert_eq!(
        shown(&format!("{uuid}.json")),
        "/data/accounts/bb8243dd….json"
    );
    // The temporary file of an atomic write carries the uuid inside.
    assert_eq!(
        shown(&format!(".{uuid}.json.tmp-6644-3")),
        "/data/accounts/.bb8243dd….json.tmp-6644-3"
    );
    for name in ["notes.txt", "é-not-a-uuid-but-36-characters-long-x.json"] {
        assert_eq!(shown(name), format!("/data/accounts/{name}"));
    }
}
