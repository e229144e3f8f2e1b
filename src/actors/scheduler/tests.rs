use super::*;
use crate::actors::registry::{AccountRegistry, RegistrySettings};
use crate::actors::store_worker::Stores;
use crate::secret::Secret;
use crate::store::{Account, AuthType, DEFAULT_IFLOW_BASE_URL};

/// A pool of two accounts with one slot each, and its picker.
fn pool(dir: &std::path::Path) -> (Arc<PoolPicker>, Arc<PoolSignal>, Vec<Arc<str>>) {
    let stores = Stores::open(dir).expect("open");
    for key in ["sk-pick-0000000000000001", "sk-pick-0000000000000002"] {
        let account = Account::new(
            Secret::new(key),
            DEFAULT_IFLOW_BASE_URL.into(),
            AuthType::Iflow,
            Utc::now(),
        );
        stores.accounts.create(&account).expect("create");
    }
    let registry = AccountRegistry::new(stores, RegistrySettings::one_shot()).expect("registry");
    let directory = registry.directory();
    let ids = directory
        .load()
        .handles()
        .iter()
        .map(|h| h.id.clone())
        .collect();
    let signal = Arc::new(PoolSignal::default());
    let scheduler = SchedulerActor::new(
        directory,
        signal.clone(),
        SchedulerSettings {
            queue_size: 8,
            queue_timeout: Duration::from_secs(1),
            sticky: true,
        },
    );
    (scheduler.picker(), signal, ids)
}

/// A pick on the worker for glm-4.6, in `conversation` if given.
fn pick(picker: &PoolPicker, conversation: Option<&str>) -> Option<Picked> {
    picker.pick_now("glm-4.6", conversation, &[]).expect("pick")
}

fn account_of(picked: &Option<Picked>) -> Arc<str> {
    picked.as_ref().map(|(h, _)| h.id.clone()).expect("a pick")
}

/// The workers' own pick: the least busy account while one has room,
/// nothing while someone waits in the pool queue (they go first), the
/// conversation's account again, and the scheduler's refusals.
#[actix_rt::test]
async fn workers_pick_while_nobody_waits_and_never_pass_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (picker, signal, ids) = pool(dir.path());

    let first = pick(&picker, None);
    let second = pick(&picker, None);
    assert_ne!(
        account_of(&first),
        account_of(&second),
        "both accounts used"
    );
    assert!(pick(&picker, None).is_none(), "all full");

    drop(first);
    signal.waiting.store(1, Ordering::Relaxed);
    assert!(
        pick(&picker, None).is_none(),
        "a newcomer took the slot a queued request is owed"
    );
    signal.waiting.store(0, Ordering::Relaxed);
    let third = pick(&picker, None);
    assert!(third.is_some(), "the freed slot");
    drop((second, third));

    let chat = pick(&picker, Some("conversation"));
    let home = account_of(&chat);
    drop(chat);
    for _ in 0..3 {
        let again = pick(&picker, Some("conversation"));
        assert_eq!(account_of(&again), home, "the conversation moved");
    }

    let refused = picker.pick_now("glm-4.6", None, &ids);
    assert!(
        matches!(refused, Err(GatewayError::InvalidRequest { .. })),
        "every account excluded"
    );
}
