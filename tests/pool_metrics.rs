//! `GET /metrics`: admin-only unless public, valid Prometheus text, and
//! counters and gauges that match what happened (requests by status, model
//! and short account id; failovers; cooldowns; in-flight; account states),
//! with full account uuids nowhere in the metrics or the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, get};
use common::gateway::Gateway;
use common::pool::{Pool, create_key, pool};
use common::prometheus::{Exposition, parse};
use common::{assert_error, secs, user_body};
use std::collections::BTreeMap;

fn scrape(p: &Pool, admin: &str) -> (String, Exposition) {
    let resp = get(p.gw.addr, "/metrics", Some(admin));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    let e = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, e)
}

#[test]
fn the_exposition_parser_rejects_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n\
        # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    assert!(parse(ok).is_ok(), "{:?}", parse(ok));
    let bad = [
        "a 1\n",                                                   // no TYPE
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",            // series twice
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",                        // bad escape
        "# TYPE a gauge\na 1",                                     // no final newline
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{y=\"\"} 1\n", // not contiguous
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
    ];
    for text in bad {
        assert!(parse(text).is_err(), "accepted {text:?}");
    }
}

#[test]
fn metrics_need_an_admin_key_unless_public() {
    let p = pool(1, &[]);
    let resp = get(p.gw.addr, "/metrics", None);
    assert_error(&resp, 401, "authentication_error", "invalid_api_key");
    for token in [p.key.as_str(), p.accounts[0].as_str()] {
        let resp = get(p.gw.addr, "/metrics", Some(token));
        assert_error(&resp, 403, "permission_error", "forbidden");
    }
    let (_, admin) = create_key(p.dir.path(), &["--admin"]);
    scrape(&p, &admin);

    // A client-chosen model name is a label value: escaped, not breaking the format.
    let public = Gateway::start(p.dir.path(), &[("IFLOW_METRICS_PUBLIC", "true")]);
    let model = "we\"ird\\mo\ndel";
    assert_eq!(
        chat(public.addr, &p.key, &user_body(model, "hi")).status,
        200
    );
    let resp = get(public.addr, "/metrics", None);
    assert_eq!(resp.status, 200);
    let e = parse(&resp.text()).unwrap_or_else(|e| panic!("{e}\n{}", resp.text()));
    let labels = [
        ("status", "200"),
        ("model", model),
        ("account", &p.accounts[0][..8]),
    ];
    assert_eq!(
        e.value("iflow_requests_total", &labels),
        Some(1.0),
        "{}",
        resp.text()
    );
}

#[test]
fn metrics_match_the_requests_failovers_cooldowns_and_account_states() {
    let p = pool(2, &[]);
    let (_, admin) = create_key(p.dir.path(), &["--admin"]);
    let short: Vec<&str> = p.accounts.iter().map(|a| &a[..8]).collect();
    let mut ok = [0u64; 2];
    for k in 0..4 {
        let text = format!("ok #{k}");
        assert_eq!(p.chat(&text).status, 200);
        ok[p.served(&text)[0]] += 1;
    }
    let resp = chat(
        p.gw.addr,
        &p.accounts[1],
        &user_body("glm-5", "scenario:status:400"),
    );
    assert_eq!(resp.status, 400);
    p.mocks[0].force("status:500");
    for k in 0..2 {
        let text = format!("probe #{k}");
        assert_eq!(p.chat(&text).status, 200);
        ok[*p.served(&text).last().unwrap()] += 1;
        if p.mocks[0].requests().last().unwrap().scenario == "status:500" {
            break;
        }
    }
    let resp = chat(p.gw.addr, "not-a-key", &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 401);

    let (addr, pinned) = (p.gw.addr, p.accounts[1].clone());
    let held =
        std::thread::spawn(move || chat(addr, &pinned, &user_body("glm-5", "scenario:hold")));
    assert!(p.mocks[1].wait_in_flight(1, secs(10)));
    let (_, during) = scrape(&p, &admin);
    for (i, n) in [(0, 0.0), (1, 1.0)] {
        let v = during.value("iflow_account_in_flight", &[("account", short[i])]);
        assert_eq!(v, Some(n), "in flight on account {i}");
    }
    p.mocks[1].release_all();
    assert_eq!(held.join().unwrap().status, 200);
    ok[1] += 1;

    let (text, e) = scrape(&p, &admin);
    let mut by_status = BTreeMap::new();
    for s in e.series("iflow_requests_total") {
        if s.labels["model"] == "glm-5" {
            by_status.insert(
                (s.labels["status"].clone(), s.labels["account"].clone()),
                s.value,
            );
        }
    }
    let want = BTreeMap::from([
        (("200".to_string(), short[0].to_string()), ok[0] as f64),
        (("200".to_string(), short[1].to_string()), ok[1] as f64),
        (("400".to_string(), short[1].to_string()), 1.0),
    ]);
    assert_eq!(by_status, want, "{text}");
    let unauth = [("status", "401"), ("model", "-"), ("account", "-")];
    assert_eq!(e.value("iflow_requests_total", &unauth), Some(1.0));
    assert_eq!(e.value("iflow_failovers_total", &[]), Some(1.0));
    let reason = [("reason", "upstream_server_error")];
    assert_eq!(e.value("iflow_cooldowns_total", &reason), Some(1.0));
    for (i, current) in [(0, "cooldown"), (1, "active")] {
        for state in ["active", "cooldown", "key-invalid", "needs-login"] {
            let v = e.value(
                "iflow_account_state",
                &[("account", short[i]), ("state", state)],
            );
            assert_eq!(
                v,
                Some(f64::from(u8::from(state == current))),
                "{i} {state}"
            );
        }
        let v = e.value("iflow_account_in_flight", &[("account", short[i])]);
        assert_eq!(v, Some(0.0));
    }
    let served: u64 = ok.iter().sum();
    let prompt = [("model", "glm-5"), ("kind", "prompt")];
    assert_eq!(
        e.value("iflow_tokens_total", &prompt),
        Some(11.0 * served as f64)
    );
    let completion = [("model", "glm-5"), ("kind", "completion")];
    assert_eq!(
        e.value("iflow_tokens_total", &completion),
        Some(7.0 * served as f64)
    );
    // One observation per upstream attempt.
    for h in ["upstream_ttfb", "upstream_latency", "queue_wait"] {
        let count = e.value(&format!("iflow_{h}_seconds_count"), &[]);
        assert_eq!(count, Some(p.total() as f64), "{h}");
    }
    for s in &e.samples {
        if let Some(a) = s.labels.get("account") {
            assert!(
                a == "-" || short.contains(&a.as_str()),
                "account label {a:?}"
            );
        }
    }
    let log = p.gw.log();
    for uuid in &p.accounts {
        assert!(!text.contains(uuid.as_str()), "full uuid in the metrics");
        assert!(!log.contains(uuid.as_str()), "full uuid in the log:\n{log}");
    }
}

/// A live account whose file turns unreadable stays in service (its uuid
/// still works as a bearer token), and the warning names the file by the
/// short id only.
#[test]
fn an_unreadable_account_file_is_not_logged_with_its_full_uuid() {
    let p = pool(1, &[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    let path = p
        .dir
        .path()
        .join(format!("accounts/{}.json", p.accounts[0]));
    std::fs::write(&path, "{ not json").unwrap();
    let warned =
        p.gw.wait_log(secs(5), |l| l.contains("skipping account file"));
    assert!(warned, "{}", p.gw.log());
    let resp = chat(p.gw.addr, &p.accounts[0], &user_body("glm-5", "still live"));
    assert_eq!(
        resp.status,
        200,
        "the account left service: {}",
        resp.text()
    );
    let log = p.gw.log();
    assert!(
        !log.contains(p.accounts[0].as_str()),
        "full uuid in the log:\n{log}"
    );
}
