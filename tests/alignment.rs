//! The official-client replay: every baseline case, run through the real
//! gateway against a capturing upstream, must match its baseline up to the
//! dynamic fields, in both alignment modes; in `official` mode the telemetry
//! around the requests must match its baseline sequences too. Also the
//! `align diff` command itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use iflow_actix::align::compare::DiffKind;
use iflow_actix::align::fixture::{
    Fixture, TelemetryFixture, check_links, load_dir, load_telemetry,
};
use iflow_actix::align::replay::{self, Replay};
use iflow_actix::align::{FieldRule, HeaderRule};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_iflow-actix");
const FIXTURES: &str = "tests/fixtures/official";

fn fixtures() -> Vec<Fixture> {
    load_dir(Path::new(FIXTURES)).expect("fixtures")
}

fn telemetry() -> Vec<TelemetryFixture> {
    load_telemetry(&Path::new(FIXTURES).join("telemetry")).expect("telemetry fixtures")
}

fn report(result: &Replay) -> String {
    let mut report = String::new();
    for case in &result.cases {
        if let Some(e) = &case.error {
            report.push_str(&format!("{}: not compared: {e}\n", case.name));
        }
        for d in &case.differences {
            report.push_str(&format!(
                "{}: {:?} {} (baseline {:?}, gateway {:?})\n",
                case.name, d.kind, d.place, d.expected, d.actual
            ));
        }
    }
    for t in &result.telemetry {
        for d in &t.differences {
            report.push_str(&format!(
                "telemetry {}: {:?} {} (baseline {:?}, gateway {:?})\n",
                t.name, d.kind, d.place, d.expected, d.actual
            ));
        }
    }
    report
}

fn replay_all(mode: &str) {
    let fixtures = fixtures();
    let telemetry = telemetry();
    assert!(fixtures.len() >= 20, "the baseline lost cases");
    assert!(
        telemetry.len() >= 4,
        "the telemetry baseline lost sequences"
    );
    check_links(&fixtures, &telemetry).expect("every telemetry sequence follows a case");
    let mut renamed = telemetry.clone();
    renamed[1].after = Some("no-such-case".into());
    assert!(check_links(&fixtures, &renamed).is_err());
    let result = replay::run(&fixtures, &telemetry, Path::new(BIN), mode).expect("replay");
    let report = report(&result);
    assert!(report.is_empty(), "mode {mode}:\n{report}");
    assert_eq!(result.cases.len(), fixtures.len());
    match mode {
        "off" => {
            assert!(
                result.others.is_empty(),
                "mode off sent {:?}",
                result.others
            );
            assert!(result.telemetry.is_empty());
        }
        _ => {
            // Every sequence was compared, each event against a request.
            assert_eq!(result.telemetry.len(), telemetry.len());
            for t in &result.telemetry {
                assert!(t.events.iter().all(|e| e.captured.is_some()), "{}", t.name);
            }
            let events: Vec<&str> = result
                .telemetry
                .iter()
                .flat_map(|t| t.events.iter().map(|e| e.event.as_str()))
                .collect();
            for name in [
                "cna-request",
                "page-view",
                "run_started",
                "run_finished",
                "run_error",
            ] {
                assert!(events.contains(&name), "no {name} in the baseline");
            }
        }
    }
}

#[test]
fn gateway_matches_the_official_baseline_with_alignment_off() {
    replay_all("off");
}

#[test]
fn gateway_matches_the_official_baseline_with_alignment_official() {
    replay_all("official");
}

#[test]
fn a_baseline_that_disagrees_is_reported_field_by_field() {
    let mut fixture = fixtures()
        .into_iter()
        .find(|f| f.name == "glm-5-plain")
        .expect("glm-5-plain");
    fixture.expected.body["temperature"] = json!(0.6);
    fixture.expected.headers.push((
        "x-client-type".into(),
        HeaderRule::Exact("iflow-cli".into()),
    ));
    let result = replay::run(&[fixture], &[], Path::new(BIN), "off").expect("replay");
    let found: Vec<(String, DiffKind)> = result.cases[0]
        .differences
        .iter()
        .map(|d| (d.place.clone(), d.kind))
        .collect();
    assert_eq!(
        found,
        vec![
            ("header x-client-type".to_string(), DiffKind::Missing),
            ("body.temperature".to_string(), DiffKind::Changed),
        ]
    );
}

#[test]
fn a_telemetry_baseline_that_disagrees_is_reported_field_by_field() {
    use iflow_actix::align::fixture::Dynamic;
    let case = fixtures()
        .into_iter()
        .find(|f| f.name == "glm-5-plain")
        .expect("glm-5-plain");
    let mut seq = telemetry()
        .into_iter()
        .find(|t| t.after.as_deref() == Some("glm-5-plain"))
        .expect("glm-5-plain telemetry");
    let event = |seq: &TelemetryFixture, name: &str| {
        seq.requests
            .iter()
            .position(|e| e.event == name)
            .expect(name)
    };
    // run_started: a changed value, a missing header, another field order.
    let i = event(&seq, "run_started");
    let started = &mut seq.requests[i].expected;
    started.body["gokey"]["model"] = json!("glm-4.7");
    started.headers.push((
        "x-requested-with".into(),
        HeaderRule::Exact("XMLHttpRequest".into()),
    ));
    let gokey = started.body["gokey"].as_object_mut().unwrap();
    let (sam, value) = gokey.shift_remove_entry("sam").unwrap();
    gokey.insert(sam, value);
    // run_finished: an extra field, a wrong format, a broken reference.
    let i = event(&seq, "run_finished");
    let finished = &mut seq.requests[i].expected;
    finished.body["gokey"]
        .as_object_mut()
        .unwrap()
        .shift_remove("tool");
    finished.dynamic_fields.insert(
        "body.gokey.duration".into(),
        FieldRule::Dynamic {
            dynamic: Dynamic::Hex16,
            same_as: None,
        },
    );
    finished.dynamic_fields.insert(
        "body.gokey.parent_observation_id".into(),
        FieldRule::Dynamic {
            dynamic: Dynamic::Hex16,
            same_as: Some("run_started body.gokey.trace_id".into()),
        },
    );
    // An event that never comes, and one that comes but is not listed.
    let error = telemetry()
        .into_iter()
        .flat_map(|t| t.requests)
        .find(|e| e.event == "run_error")
        .unwrap();
    seq.requests.push(error);
    seq.requests.retain(|e| e.event != "page-view");

    let result = replay::run(&[case], &[seq], Path::new(BIN), "official").expect("replay");
    let differences = &result.telemetry[0].differences;
    let found: Vec<(&str, DiffKind)> = differences
        .iter()
        .map(|d| (d.place.as_str(), d.kind))
        .collect();
    assert_eq!(
        found,
        [
            ("run_started: header x-requested-with", DiffKind::Missing),
            ("run_started: body.gokey.model", DiffKind::Changed),
            ("run_started: body.gokey", DiffKind::Order),
            (
                "run_finished: body.gokey.parent_observation_id",
                DiffKind::BadFormat
            ),
            ("run_finished: body.gokey.duration", DiffKind::BadFormat),
            ("run_finished: body.gokey.tool", DiffKind::Extra),
            ("run_error", DiffKind::Missing),
            ("request", DiffKind::Extra),
        ],
        "{differences:#?}"
    );
    assert_eq!(differences[1].actual.as_deref(), Some("\"glm-5\""));
    assert_eq!(differences[7].actual.as_deref(), Some("POST /v.gif"));
}

/// Runs `iflow-actix align diff` from the repository root.
fn align_diff(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["align", "diff"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn align diff");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("align diff did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn align_diff_shows_one_case_beside_its_baseline() {
    let out = align_diff(&["--case", "qwen3-coder-plus-client-sampling"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(cases, ["== qwen3-coder-plus-client-sampling: same"]);
    // Body fields side by side: baseline value, then what the gateway sent.
    let row = |place: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(place))
            .unwrap_or_else(|| panic!("no {place} row in:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("body.max_new_tokens"),
        ["body.max_new_tokens", "1000", "1000"]
    );
    assert_eq!(
        row("body.max_tokens"),
        [
            "body.max_tokens",
            "1000",
            "(client's",
            "own,",
            "forwarded)",
            "1000"
        ]
    );
    assert!(text.contains("1 cases, 1 identical up to dynamic fields, 0 differ (mode off)"));
}

#[test]
fn align_diff_json_has_the_baseline_and_bodies_as_json() {
    let out = align_diff(&["--case", "glm-5-plain.json", "--json", "--mode", "official"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["mode"], "official");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    let case = &cases[0];
    assert_eq!(case["name"], "glm-5-plain");
    assert_eq!(case["differences"], json!([]));
    assert_eq!(case["reply_status"], 200);
    assert_eq!(case["baseline"]["body"]["max_new_tokens"], 32000);
    assert_eq!(case["captured"]["body"]["max_new_tokens"], 32000);
    assert_eq!(case["captured"]["body"]["model"], "glm-5");
    // The telemetry of this case and of start-up, compared and clean.
    let telemetry = report["telemetry"].as_array().unwrap();
    let names: Vec<&str> = telemetry
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"glm-5-plain") && names.contains(&"startup"));
    for t in telemetry {
        assert_eq!(t["differences"], json!([]), "{}", t["name"]);
    }
    let events = telemetry
        .iter()
        .find(|t| t["name"] == "glm-5-plain")
        .unwrap()["events"]
        .as_array()
        .unwrap();
    let started = events.iter().find(|e| e["event"] == "run_started").unwrap();
    assert!(started["baseline"]["body"]["gokey"].is_object());
    assert!(started["captured"]["body"].is_object());
    assert!(
        started["captured"]["body"]["gokey"]
            .as_str()
            .unwrap()
            .starts_with("pid=iflow&sam=iflow.cli.")
    );
}

#[test]
fn align_diff_fails_on_a_difference_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let source: PathBuf = [env!("CARGO_MANIFEST_DIR"), FIXTURES, "glm-5-plain.json"]
        .iter()
        .collect();
    let mut case: Value = serde_json::from_slice(&std::fs::read(source).unwrap()).unwrap();
    case["expected"]["body"]["top_p"] = json!(0.9);
    std::fs::write(dir.path().join("glm-5-plain.json"), case.to_string()).unwrap();
    let fixtures = dir.path().to_str().unwrap();

    let out = align_diff(&["--fixtures", fixtures]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("== glm-5-plain: 1 differences"), "{text}");
    assert!(
        text.contains("! changed    body.top_p: baseline 0.9 / gateway 0.95"),
        "{text}"
    );
    let flagged = text
        .lines()
        .find(|l| l.contains("body.top_p") && !l.contains("changed"))
        .unwrap();
    assert!(flagged.starts_with(" !"), "{flagged}");

    let out = align_diff(&["--fixtures", fixtures, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        report["cases"][0]["differences"],
        json!([{ "place": "body.top_p", "kind": "changed", "expected": "0.9", "actual": "0.95" }])
    );

    let out = align_diff(&["--fixtures", fixtures, "--case", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case named \"nope\""));
}
