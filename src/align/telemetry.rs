//! Compares the telemetry that arrived around one chat request (or at
//! start-up) with its baseline sequence: every expected event must arrive
//! once, nothing else may, and each one is compared field by field.

use super::body::decode;
use super::compare::{Captured, Context, DiffKind, Difference, Peer, compare_request};
use super::dynamic::Facts;
use super::fixture::{ExpectedRequest, TelemetryFixture};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    pub event: String,
    pub baseline: ExpectedRequest,
    /// The request that arrived for it, if one did.
    pub captured: Option<Captured>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TelemetryResult {
    pub name: String,
    pub description: String,
    /// The chat case the sequence goes with; none for start-up.
    pub after: Option<String>,
    pub events: Vec<EventResult>,
    /// Requests that arrived but are not in the baseline.
    pub extra: Vec<Captured>,
    /// Places are prefixed with the event: `run_started: body.gokey.model`.
    pub differences: Vec<Difference>,
}

/// Matches `arrived` to the fixture's events by method and path (their
/// arrival order is not fixed: each event has its own connection), then
/// compares each. `chat` is the chat call the events report on.
pub fn compare_group(
    fixture: &TelemetryFixture,
    arrived: Vec<Captured>,
    chat: Option<(&ExpectedRequest, &Captured)>,
    facts: Facts<'_>,
) -> TelemetryResult {
    let mut pool: Vec<Option<Captured>> = arrived.into_iter().map(Some).collect();
    let events: Vec<EventResult> = fixture
        .requests
        .iter()
        .map(|e| {
            let wanted = |c: &Option<Captured>| {
                c.as_ref().is_some_and(|c| {
                    c.method.eq_ignore_ascii_case(&e.expected.method) && c.path == e.expected.path
                })
            };
            EventResult {
                event: e.event.clone(),
                baseline: e.expected.clone(),
                captured: pool.iter_mut().find(|c| wanted(c)).and_then(Option::take),
            }
        })
        .collect();
    let extra: Vec<Captured> = pool.into_iter().flatten().collect();

    let mut peers = Vec::new();
    if let Some((expected, captured)) = chat {
        peers.push(Peer {
            label: "chat",
            captured,
            body: decode(expected, &captured.body).ok(),
        });
    }
    for e in &events {
        if let Some(captured) = &e.captured {
            peers.push(Peer {
                label: &e.event,
                captured,
                body: decode(&e.baseline, &captured.body).ok(),
            });
        }
    }
    let ctx = Context {
        facts: Facts {
            chat: chat.map(|(_, c)| c),
            ..facts
        },
        peers,
    };
    let mut differences = Vec::new();
    for e in &events {
        let Some(captured) = &e.captured else {
            differences.push(Difference {
                place: e.event.clone(),
                kind: DiffKind::Missing,
                expected: Some(format!("{} {}", e.baseline.method, e.baseline.path)),
                actual: None,
            });
            continue;
        };
        for mut d in compare_request(&e.baseline, captured, &ctx) {
            d.place = format!("{}: {}", e.event, d.place);
            differences.push(d);
        }
    }
    for c in &extra {
        differences.push(Difference {
            place: "request".into(),
            kind: DiffKind::Extra,
            expected: None,
            actual: Some(format!("{} {}", c.method, c.path)),
        });
    }
    drop(ctx);
    TelemetryResult {
        name: fixture.name.clone(),
        description: fixture.description.clone(),
        after: fixture.after.clone(),
        events,
        extra,
        differences,
    }
}
