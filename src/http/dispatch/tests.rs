use super::*;
use crate::actors::homes::Homes;
use crate::actors::refresher::RefresherActor;
use crate::actors::registry::{AccountRegistry, CooldownPolicy, RegistrySettings};
use crate::actors::scheduler::{SchedulerActor, SchedulerSettings};
use crate::actors::store_worker::Stores;
use crate::actors::upstream::PoolSignal;
use crate::cli::{Cli, Command};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{Account, DEFAULT_IFLOW_BASE_URL};
use actix::{Actor, Arbiter};
use actix_web::test::TestRequest;
use clap::{CommandFactory, FromArgMatches};

fn chat(user: &str) -> ChatRequest {
    let body = serde_json::json!({
        "model": "glm-5",
        "user": user,
        "messages": [{"role": "user", "content": "hi"}],
    });
    ChatRequest::parse(body.to_string().as_bytes()).expect("valid request")
}

#[test]
fn session_header_wins_over_user_field() {
    let req = TestRequest::default()
        .insert_header(("x-session-id", "s-1"))
        .to_http_request();
    assert_eq!(affinity(&req, &chat("u-1")).as_deref(), Some("s-1"));
}

#[test]
fn unusable_session_header_falls_back_to_user_field() {
    let long = "x".repeat(257);
    for header in ["", long.as_str()] {
        let req = TestRequest::default()
            .insert_header(("x-session-id", header))
            .to_http_request();
        assert_eq!(affinity(&req, &chat("u-1")).as_deref(), Some("u-1"));
    }
    let req = TestRequest::default().to_http_request();
    assert_eq!(affinity(&req, &chat("")), None);
    assert_eq!(affinity(&req, &chat(&long)), None);
}

/// Every setting at its default, whatever `IFLOW_*` variables the shell
/// running the tests has set: the command line without its environment.
fn default_cli(data_dir: &str) -> Cli {
    let command = Cli::command()
        .mut_args(|a| a.env(None::<&str>))
        .mut_subcommand("serve", |s| s.mut_args(|a| a.env(None::<&str>)));
    let matches = command
        .try_get_matches_from(["iflow-actix", "--data-dir", data_dir, "serve"])
        .expect("the defaults parse");
    Cli::from_arg_matches(&matches).expect("cli")
}

/// A gateway's shared state over one API-key account whose actor runs on a
/// stand-in HTTP worker (returned, to be stopped); the test's own thread is
/// where requests run, as on another worker.
async fn state_with_the_actor_on_a_worker() -> (tempfile::TempDir, AppState, Arbiter) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = Stores::open(dir.path()).expect("open");
    let account = Account::new(
        Secret::new("sk-iflow-dispatch-test-000000"),
        DEFAULT_IFLOW_BASE_URL.into(),
        AuthType::Iflow,
        Utc::now(),
    );
    stores.accounts.create(&account).expect("create");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let cli = default_cli(data_dir);
    let Command::Serve(config) = cli.command else {
        unreachable!("serve was given")
    };

    let homes = Homes::default();
    let signal = Arc::new(PoolSignal::default());
    let accounts = stores.accounts.clone();
    let registry = AccountRegistry::new(
        stores,
        RegistrySettings {
            concurrency: 2,
            pool: Some(signal.clone()),
            homes: Some(homes.clone()),
            ..RegistrySettings::one_shot()
        },
    )
    .expect("registry");
    let directory = registry.directory();
    let ledger = registry.ledger();
    let registry = registry.start();

    let worker = Arbiter::new();
    let (started, up) = tokio::sync::oneshot::channel();
    let worker_homes = homes.clone();
    worker.spawn_fn(move || {
        worker_homes.register_current();
        let _ = started.send(());
    });
    up.await.expect("worker started");
    registry.send(PlaceActors::default()).await.expect("place");
    assert!(directory.load().handles()[0].upstream.connected());

    let refresher = RefresherActor::new(
        registry.clone(),
        accounts,
        cli.oauth,
        &cli.upstream_proxy,
        cli.refresh,
        false,
    )
    .start();
    let scheduler = SchedulerActor::new(
        directory.clone(),
        signal,
        SchedulerSettings {
            queue_size: 0,
            queue_timeout: Duration::from_secs(1),
            sticky: false,
        },
    );
    let picker = scheduler.picker();
    let state = AppState {
        cooldown: CooldownPolicy {
            base: config.cooldown_base,
            max: config.cooldown_max,
        },
        config: Arc::new(*config),
        directory,
        registry,
        refresher,
        scheduler: scheduler.start(),
        picker,
        metrics: Arc::new(Metrics::default()),
        ledger,
        telemetry: None,
    };
    (dir, state, worker)
}

/// Stops the stand-in worker; the account's actor stops with its thread.
fn stop(worker: Arbiter, state: &AppState) -> Arc<AccountHandle> {
    worker.stop();
    worker.join().expect("worker stopped");
    let handle = state.directory.load().handles()[0].clone();
    assert!(
        !handle.upstream.connected(),
        "the actor outlived its thread"
    );
    handle
}

/// A request naming its account, whose actor stopped with its worker, is
/// served by the replacement, and its slot is counted and given back.
#[actix_rt::test]
async fn a_pinned_request_meeting_a_stopped_actor_is_served_by_its_replacement() {
    let (_dir, state, worker) = state_with_the_actor_on_a_worker().await;
    let stopped = stop(worker, &state);

    let (lease, _) = admit_pinned(&state, &stopped, true)
        .await
        .expect("served by the replacement");
    let handle = state.directory.load().handles()[0].clone();
    assert!(handle.upstream.connected(), "no replacement runs");
    assert!(!lease.headers.is_empty(), "the lease is not signed");
    assert_eq!(handle.stats.in_flight(), 1);
    drop(lease);
    assert_eq!(handle.stats.in_flight(), 0);
}

/// The same for a request served by the pool: the picked account's actor
/// stopped between the pick and the signature.
#[actix_rt::test]
async fn a_pool_request_meeting_a_stopped_actor_is_served_by_its_replacement() {
    let (_dir, state, worker) = state_with_the_actor_on_a_worker().await;
    stop(worker, &state);

    let (handle, lease, _) = admit_pool(&state, "glm-5", None, &[], true)
        .await
        .expect("served by the replacement");
    assert!(handle.upstream.connected(), "signed by a stopped actor?");
    assert!(!lease.headers.is_empty(), "the lease is not signed");
    assert_eq!(handle.stats.in_flight(), 1);
    drop(lease);
    assert_eq!(handle.stats.in_flight(), 0);
}
