use super::*;
use crate::secret::Secret;
use crate::store::{AccountState, AuthType, DEFAULT_IFLOW_BASE_URL};
use chrono::Utc;

fn settings() -> RegistrySettings {
    RegistrySettings::one_shot()
}

fn oauth_account(refresh: &str) -> Account {
    let mut a = Account::new(
        Secret::new("sk-cas-0000000000000000"),
        DEFAULT_IFLOW_BASE_URL.into(),
        AuthType::OAuthIflow,
        Utc::now(),
    );
    a.oauth_access_token = Secret::new("at-old");
    a.oauth_refresh_token = Secret::new(refresh);
    a
}

/// A data directory holding one OAuth account.
fn one_account(refresh: &str) -> (tempfile::TempDir, Stores, Account) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = Stores::open(dir.path()).expect("open");
    let a = oauth_account(refresh);
    stores.accounts.create(&a).expect("create");
    (dir, stores, a)
}

/// A login that stored new tokens while a refresh with the old ones was
/// being refused must not be marked needs-login.
#[actix_rt::test]
async fn needs_login_is_written_only_over_the_rejected_refresh_token() {
    let (_dir, stores, a) = one_account("rt-old");
    let registry = AccountRegistry::new(stores.clone(), settings())
        .expect("registry")
        .start();
    stores
        .accounts
        .modify(&a.uuid, |x| x.oauth_refresh_token = Secret::new("rt-login"))
        .expect("login");

    let mark = |rejected: &str| MarkNeedsLogin {
        uuid: a.uuid.clone(),
        rejected: Secret::new(rejected),
    };
    let after = registry
        .send(mark("rt-old"))
        .await
        .expect("send")
        .expect("mark");
    assert_eq!(after.state, None);
    let on_disk = stores.accounts.load(&a.uuid).expect("load").expect("file");
    assert_eq!(on_disk.state, None);
    assert_eq!(on_disk.oauth_refresh_token.expose(), "rt-login");

    let after = registry
        .send(mark("rt-login"))
        .await
        .expect("send")
        .expect("mark");
    assert_eq!(after.state, Some(AccountState::NeedsLogin));
    let on_disk = stores.accounts.load(&a.uuid).expect("load").expect("file");
    assert_eq!(on_disk.state, Some(AccountState::NeedsLogin));
}

#[actix_rt::test]
async fn a_broken_file_is_listed_and_its_reload_is_an_error() {
    let (_dir, stores, a) = one_account("rt-old");
    let registry = AccountRegistry::new(stores.clone(), settings())
        .expect("registry")
        .start();
    std::fs::write(stores.accounts.path_of(&a.uuid), b"{ broken").expect("break");
    registry.send(Rescan).await.expect("rescan");

    let listed = registry.send(ListUnreadable).await.expect("send");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, a.uuid);
    let reload = registry
        .send(ReloadAccount(a.uuid.clone()))
        .await
        .expect("send");
    assert!(
        matches!(reload, Err(StoreError::Corrupt { .. })),
        "{reload:?}"
    );
    // The last good state stays live for requests.
    assert!(
        registry
            .send(GetAccount(a.uuid.clone()))
            .await
            .expect("send")
            .is_some()
    );
    assert_eq!(
        std::fs::read(stores.accounts.path_of(&a.uuid)).expect("read"),
        b"{ broken"
    );
}

/// Starts an arbiter standing in for an HTTP worker and registers it.
async fn http_worker(homes: &crate::actors::homes::Homes) -> (Arbiter, std::thread::ThreadId) {
    let arbiter = Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let homes = homes.clone();
    arbiter.spawn_fn(move || {
        homes.register_current();
        let _ = tx.send(std::thread::current().id());
    });
    (arbiter, rx.await.expect("worker started"))
}

/// Asks the account's actor for a slot; returns the lease.
async fn acquire(handle: &AccountHandle) -> Result<crate::actors::upstream::Lease, String> {
    use crate::actors::upstream::{Acquire, Admission};
    match handle.upstream.send(Acquire { starts_turn: true }).await {
        Ok(Ok(Admission::Ready(lease))) => Ok(lease),
        Ok(Ok(Admission::Queued(_))) => Err("queued".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("mailbox: {e}")),
    }
}

/// A registry whose account actors live on stand-in HTTP workers (none
/// registered yet), over a data directory holding one OAuth account.
fn registry_on_workers(
    concurrency: usize,
) -> (
    tempfile::TempDir,
    Account,
    crate::actors::homes::Homes,
    SharedDirectory,
    Addr<AccountRegistry>,
) {
    let (dir, stores, account) = one_account("rt");
    let homes = crate::actors::homes::Homes::default();
    let mut settings = settings();
    settings.concurrency = concurrency;
    settings.homes = Some(homes.clone());
    let registry = AccountRegistry::new(stores, settings).expect("registry");
    let directory = registry.directory();
    (dir, account, homes, directory, registry.start())
}

/// Account actors wait for the first HTTP worker, run on it, and are
/// replaced, with their slots, when that worker's thread goes away.
#[actix_rt::test]
async fn account_actors_live_on_http_workers_and_outlive_a_worker_restart() {
    let (_dir, _, homes, directory, registry) = registry_on_workers(2);
    let handle = |d: &SharedDirectory| d.load().handles()[0].clone();

    // No worker yet: a request waits in the mailbox, then is served.
    let first = handle(&directory);
    let waiting = actix_rt::spawn(async move { acquire(&first).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "served with no worker up");
    let (worker, _) = http_worker(&homes).await;
    registry.send(PlaceActors::default()).await.expect("place");
    waiting
        .await
        .expect("join")
        .expect("served once a worker is up");

    // One slot stays taken across the restart.
    let held = acquire(&handle(&directory)).await.expect("first slot");
    worker.stop();
    worker.join().expect("worker stopped");
    let before = handle(&directory);
    assert!(
        !before.upstream.connected(),
        "the actor stopped with its thread"
    );

    let (restarted, _) = http_worker(&homes).await;
    registry.send(PlaceActors::default()).await.expect("place");
    let after = handle(&directory);
    assert!(after.upstream.connected(), "a new actor was started");
    assert!(
        Arc::ptr_eq(&before.slots, &after.slots),
        "the slots are kept"
    );
    let second = acquire(&after).await.expect("the second slot");
    // The cap counts the slot taken before the restart: no third slot
    // (and no queue in these settings).
    assert_eq!(after.stats.in_flight(), 2);
    assert!(acquire(&after).await.is_err(), "a third slot was given");
    drop(held);
    let third = acquire(&after).await.expect("a freed slot is usable again");
    assert_eq!(after.stats.in_flight(), 2);
    drop((second, third));
    restarted.stop();
}

/// Deleting an account whose actor stopped with its thread still wakes the
/// requests waiting for its slots (the actor can no longer do it).
#[actix_rt::test]
async fn deleting_an_account_with_a_stopped_actor_closes_its_slots() {
    let (_dir, a, homes, directory, registry) = registry_on_workers(1);
    let (worker, _) = http_worker(&homes).await;
    registry.send(PlaceActors::default()).await.expect("place");
    let handle = directory.load().handles()[0].clone();
    acquire(&handle).await.expect("the actor runs");
    worker.stop();
    worker.join().expect("worker stopped");
    assert!(!handle.upstream.connected());

    let deleted = registry.send(DeleteAccount(a.uuid.clone())).await;
    assert!(matches!(deleted, Ok(Ok(true))), "{deleted:?}");
    assert!(
        handle.slots.is_closed(),
        "waiters would sleep until their timeout"
    );
    assert!(directory.load().handles().is_empty());
}

/// A request that met a stopped actor has the replacement started on its
/// own worker (at shutdown the next worker in turn may be stopping too).
#[actix_rt::test]
async fn a_replacement_asked_for_by_a_request_runs_on_that_requests_worker() {
    let (_dir, _, homes, directory, registry) = registry_on_workers(1);
    let (first, _) = http_worker(&homes).await;
    registry.send(PlaceActors::default()).await.expect("place");
    let (second, _) = http_worker(&homes).await;
    let (asking, _) = http_worker(&homes).await;
    first.stop();
    first.join().expect("worker stopped");

    // Without `near` the replacement would go to `second` (next in turn).
    let near = PlaceActors {
        near: Some(asking.handle()),
    };
    registry.send(near).await.expect("place");
    let handle = directory.load().handles()[0].clone();
    acquire(&handle).await.expect("the replacement runs");
    asking.stop();
    asking.join().expect("worker stopped");
    assert!(
        !handle.upstream.connected(),
        "the replacement did not live on the asking worker"
    );
    second.stop();
}
