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

/// A login that stored new tokens while a refresh with the old ones was
/// being refused must not be marked needs-login.
#[actix_rt::test]
async fn needs_login_is_written_only_over_the_rejected_refresh_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = Stores::open(dir.path()).expect("open");
    let a = oauth_account("rt-old");
    stores.accounts.create(&a).expect("create");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = Stores::open(dir.path()).expect("open");
    let a = oauth_account("rt-old");
    stores.accounts.create(&a).expect("create");
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
