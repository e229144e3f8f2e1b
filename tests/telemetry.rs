//! The official client's telemetry (IFLOW_ALIGN_MODE=official): the event
//! sequence and fields at a collector, and that a bad collector never
//! touches the chat request. With alignment off nothing is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::chat;
use common::gateway::{Gateway, import};
use common::{API_KEY, user_body};
use iflow_actix::align::capture::{CNA, CaptureServer};
use iflow_actix::align::compare::Captured;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn official(collector: &str) -> Vec<(&'static str, String)> {
    vec![
        ("IFLOW_ALIGN_MODE", "official".to_string()),
        ("IFLOW_TELEMETRY_GM_URL", format!("{collector}/gm")),
        ("IFLOW_TELEMETRY_PV_URL", format!("{collector}/v.gif")),
    ]
}

fn start(dir: &std::path::Path, env: &[(&'static str, String)]) -> Gateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gateway::start(dir, &env)
}

/// The `k=v&…` fields of a GM event body, in order (values still encoded).
fn gokey(r: &Captured) -> Vec<(String, String)> {
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["gmkey"], "AI");
    body["gokey"]
        .as_str()
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn names(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn a_chat_request_sends_page_view_run_started_and_run_finished() {
    let dir = tempfile::tempdir().unwrap();
    let capture = CaptureServer::start().unwrap();
    import(
        dir.path(),
        API_KEY,
        &format!("{}/v1", capture.base_url()),
        "iflow",
    );
    let gw = start(dir.path(), &official(&capture.base_url()));
    let uuid = std::fs::read_dir(dir.path().join("accounts"))
        .unwrap()
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .unwrap();
    // The cna cookie is fetched at start and the page view needs it; a chat
    // sent at once, maybe before the fetch is answered, still gets one.
    assert_eq!(chat(gw.addr, &uuid, &user_body("glm-5", "hi")).status, 200);
    let mut events = capture.wait_for(3, Duration::from_secs(5), |r| {
        r.method == "POST" && !r.path.contains("chat")
    });
    // The page view and run_started leave together, each on its own
    // connection, so they may arrive in either order.
    let order = [
        "/v.gif",
        "/gm//aitrack.lifecycle.run_started",
        "/gm//aitrack.lifecycle.run_finished",
    ];
    events.sort_by_key(|r| order.iter().position(|p| *p == r.path));
    let paths: Vec<&str> = events.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, order);
    let upstream = capture
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    let user_id = std::fs::read_to_string(dir.path().join("telemetry/installation_id")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("telemetry"), 0o700, "telemetry folder is private");
        assert_eq!(
            mode("telemetry/installation_id"),
            0o600,
            "installation id is private"
        );
    }

    let pv = String::from_utf8(events[0].body.clone()).unwrap();
    assert_eq!(
        events[0].header("content-type"),
        Some("text/plain;charset=UTF-8")
    );
    assert!(
        pv.starts_with(&format!(
            "logtype=1&title=iFlow-CLI&pre=-&scr=-&cna={CNA}&spm-cnt="
        )),
        "{pv}"
    );
    assert!(pv.contains(&format!("&_user_id={user_id}&")), "{pv}");
    assert!(pv.ends_with("&_g_encode=utf-8"), "{pv}");

    let started = gokey(&events[1]);
    assert_eq!(
        names(&started),
        [
            "pid",
            "sam",
            "trace_id",
            "session_id",
            "conversation_id",
            "observation_id",
            "model",
            "tool",
            "user_id"
        ]
    );
    let f: BTreeMap<_, _> = started.into_iter().collect();
    let trace = upstream
        .header("traceparent")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(f["pid"], "iflow");
    assert_eq!(f["trace_id"], trace);
    assert_eq!(f["session_id"], upstream.header("session-id").unwrap());
    assert_eq!(
        f["conversation_id"],
        upstream.header("conversation-id").unwrap()
    );
    assert_eq!(
        f["sam"],
        format!("iflow.cli.{}.{trace}", f["conversation_id"])
    );
    assert_eq!(f["model"], "glm-5");
    assert_eq!(f["user_id"], user_id);
    assert_eq!(f["observation_id"].len(), 16);

    let finished: BTreeMap<_, _> = gokey(&events[2]).into_iter().collect();
    assert_eq!(finished["parent_observation_id"], f["observation_id"]);
    assert_ne!(finished["observation_id"], f["observation_id"]);
    assert_eq!(finished["sessionId"], f["session_id"]);
    assert!(finished["duration"].parse::<u64>().is_ok());
}

#[test]
fn a_failed_call_sends_run_error_with_the_client_facts() {
    let dir = tempfile::tempdir().unwrap();
    let capture = CaptureServer::start().unwrap();
    // An upstream that refuses connections.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uuid = import(dir.path(), API_KEY, &format!("http://{closed}/v1"), "iflow");
    let gw = start(dir.path(), &official(&capture.base_url()));
    assert_eq!(chat(gw.addr, &uuid, &user_body("glm-5", "hi")).status, 502);
    let events = capture.wait_for(1, Duration::from_secs(5), |r| r.path.ends_with("run_error"));
    let fields = gokey(&events[0]);
    assert_eq!(
        names(&fields),
        [
            "pid",
            "sam",
            "trace_id",
            "observation_id",
            "parent_observation_id",
            "session_id",
            "conversation_id",
            "user_id",
            "error_msg",
            "model",
            "tool",
            "toolName",
            "toolArgs",
            "cliVer",
            "platform",
            "arch",
            "nodeVersion",
            "osVersion"
        ]
    );
    let f: BTreeMap<_, _> = fields.into_iter().collect();
    assert_eq!(f["cliVer"], "0.5.19");
    assert!(f["error_msg"].contains("connect"), "{}", f["error_msg"]);
    assert!(!f["error_msg"].contains(API_KEY));
}

/// A collector that reads each request whole and answers 500; counts them.
fn failing_collector() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let header = line.trim_end().to_ascii_lowercase();
                    if header.is_empty() {
                        break;
                    }
                    if let Some(v) = header.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                count.fetch_add(1, Ordering::SeqCst);
                let _ = (&stream).write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nerror",
                );
            });
        }
    });
    (url, seen)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A collector that hangs or fails changes neither the chat reply (status,
/// content type, body bytes) nor its latency: each gateway's median over a
/// few requests stays within 50 ms of the same requests with alignment
/// off. Blocking on the collector would cost its 3 s timeout.
#[test]
fn a_hanging_or_failing_collector_does_not_delay_or_change_the_chat_reply() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = CaptureServer::start().unwrap();
    let healthy = CaptureServer::start().unwrap();
    // Accepts connections and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = format!("http://{}", hang.local_addr().unwrap());
    let (failing, failed) = failing_collector();
    let uuid = import(
        dir.path(),
        API_KEY,
        &format!("{}/v1", upstream.base_url()),
        "iflow",
    );
    let gateways = [
        ("off", start(dir.path(), &[])),
        ("healthy", start(dir.path(), &official(&healthy.base_url()))),
        ("hanging", start(dir.path(), &official(&hanging))),
        ("failing", start(dir.path(), &official(&failing))),
    ];
    let body = user_body("glm-5", "hi");
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); gateways.len()];
    let mut replies = Vec::new();
    for round in 0..6 {
        // Interleaved, so that load on the machine hits every gateway alike.
        for (i, (_, gw)) in gateways.iter().enumerate() {
            let t = Instant::now();
            let reply = chat(gw.addr, &uuid, &body);
            let took = t.elapsed();
            if round == 0 {
                // The first request of each gateway opens its connections.
                replies.push(reply);
            } else {
                times[i].push(took);
            }
        }
    }
    let shape = |r: &common::client::Response| {
        (
            r.status,
            r.header("content-type").map(str::to_string),
            r.body.clone(),
        )
    };
    assert_eq!(replies[0].status, 200, "{}", replies[0].text());
    for (i, (name, _)) in gateways.iter().enumerate().skip(1) {
        assert_eq!(shape(&replies[i]), shape(&replies[1]), "{name} vs healthy");
    }
    assert_eq!(shape(&replies[0]), shape(&replies[1]), "off vs healthy");
    let off = median(times[0].clone());
    for (i, (name, _)) in gateways.iter().enumerate().skip(1) {
        let on = median(times[i].clone());
        assert!(
            on <= off + Duration::from_millis(50),
            "{name}: median {on:?} against {off:?} with alignment off"
        );
    }
    // The collectors were really in the way: events went to both.
    assert!(
        failed.load(Ordering::SeqCst) >= 5,
        "the failing collector saw no events"
    );
    assert!(
        healthy
            .requests()
            .iter()
            .any(|r| r.path.ends_with("run_finished"))
    );
    drop(hang);
}

#[test]
fn alignment_off_sends_nothing_but_the_chat_call() {
    let dir = tempfile::tempdir().unwrap();
    let capture = CaptureServer::start().unwrap();
    let uuid = import(
        dir.path(),
        API_KEY,
        &format!("{}/v1", capture.base_url()),
        "iflow",
    );
    let mut env = official(&capture.base_url());
    env[0].1 = "off".into();
    let gw = start(dir.path(), &env);
    assert_eq!(chat(gw.addr, &uuid, &user_body("glm-5", "hi")).status, 200);
    assert_eq!(
        chat(gw.addr, &uuid, &user_body("glm-5", "scenario:x")).status,
        200
    );
    let all = capture.requests();
    assert!(
        all.iter().all(|r| r.path.ends_with("/chat/completions")),
        "{all:?}"
    );
    assert!(!dir.path().join("telemetry").exists());
}
