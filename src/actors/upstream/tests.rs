use super::*;
use crate::secret::Secret;
use crate::store::AuthType;

fn actor(cap: usize, queue: usize, wait: Duration) -> (Addr<UpstreamActor>, Arc<SlotStats>) {
    let a = UpstreamActor::new(
        "acc-1",
        Credentials {
            api_key: Secret::new("sk-test-key"),
            base_url: "http://127.0.0.1:9/v1/".into(),
            auth_type: AuthType::Iflow,
        },
        cap,
        queue,
        wait,
        None,
    );
    let stats = a.stats();
    (a.start(), stats)
}

fn header<'a>(lease: &'a Lease, name: &str) -> &'a str {
    lease
        .headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_default()
}

async fn ready(addr: &Addr<UpstreamActor>, starts_turn: bool) -> Lease {
    match addr.send(Acquire { starts_turn }).await {
        Ok(Ok(Admission::Ready(lease))) => lease,
        _ => panic!("expected a ready lease"),
    }
}

#[actix_rt::test]
async fn cap_queue_and_release() {
    let (addr, stats) = actor(1, 1, Duration::from_secs(5));
    let first = ready(&addr, true).await;
    assert_eq!(&*first.url, "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(stats.in_flight(), 1);

    let Ok(Ok(Admission::Queued(ticket))) = addr.send(Acquire { starts_turn: false }).await else {
        panic!("second request must queue")
    };
    assert_eq!(stats.waiting(), 1);
    match addr.send(Acquire { starts_turn: false }).await {
        Ok(Err(GatewayError::QueueFull { retry_after, .. })) => assert!(retry_after >= 1),
        _ => panic!("third request must be refused"),
    }

    drop(first);
    let permit = ticket.wait("acc-1").await.expect("slot freed");
    assert_eq!(stats.waiting(), 0);
    assert_eq!(stats.in_flight(), 1);
    let lease = addr
        .send(Sign {
            permit,
            starts_turn: false,
        })
        .await
        .expect("signed");
    drop(lease);
    assert_eq!(stats.in_flight(), 0);
}

#[actix_rt::test]
async fn queue_wait_times_out_and_leaving_frees_the_place() {
    let (addr, stats) = actor(1, 4, Duration::from_millis(50));
    let _held = ready(&addr, true).await;
    let Ok(Ok(Admission::Queued(ticket))) = addr.send(Acquire { starts_turn: false }).await else {
        panic!("must queue")
    };
    match ticket.wait("acc-1").await {
        Err(GatewayError::QueueTimeout { .. }) => {}
        _ => panic!("expected a queue timeout"),
    }
    assert_eq!(stats.waiting(), 0);
}

#[actix_rt::test]
async fn conversation_id_changes_per_user_turn_session_stays() {
    let (addr, _) = actor(4, 0, Duration::from_secs(1));
    let a = ready(&addr, true).await;
    let b = ready(&addr, false).await;
    let c = ready(&addr, true).await;
    assert_eq!(header(&a, "session-id"), header(&c, "session-id"));
    assert!(header(&a, "session-id").starts_with("session-"));
    assert_eq!(header(&a, "conversation-id"), header(&b, "conversation-id"));
    assert_ne!(header(&b, "conversation-id"), header(&c, "conversation-id"));
    let ts: i64 = header(&c, "x-iflow-timestamp").parse().expect("timestamp");
    let expected = crate::profile::iflow::signature::sign(
        "sk-test-key",
        "iFlow-Cli",
        header(&c, "session-id"),
        ts,
    );
    assert_eq!(Some(header(&c, "x-iflow-signature")), expected.as_deref());
}

#[actix_rt::test]
async fn new_credentials_apply_to_the_next_lease() {
    let (addr, _) = actor(1, 0, Duration::from_secs(1));
    addr.send(UpdateCredentials(Credentials {
        api_key: Secret::new("sk-new-key"),
        base_url: "http://127.0.0.1:10/v2".into(),
        auth_type: AuthType::OpenAi,
    }))
    .await
    .expect("update");
    let lease = ready(&addr, true).await;
    assert_eq!(&*lease.url, "http://127.0.0.1:10/v2/chat/completions");
    assert_eq!(header(&lease, "authorization"), "Bearer sk-new-key");
    assert_eq!(lease.profile, Profile::OpenAi);
}
