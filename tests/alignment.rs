//! The official-client replay: every baseline case, run through the real
//! gateway against a capturing upstream, must match its baseline up to the
//! dynamic fields, in both alignment modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use iflow_actix::align::fixture::load_dir;
use iflow_actix::align::replay;
use std::path::Path;

fn replay_all(mode: &str) {
    let fixtures = load_dir(Path::new("tests/fixtures/official")).expect("fixtures");
    assert!(fixtures.len() >= 20, "the baseline lost cases");
    let gateway = Path::new(env!("CARGO_BIN_EXE_iflow-actix"));
    let result = replay::run(&fixtures, gateway, mode).expect("replay");
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
    assert!(report.is_empty(), "mode {mode}:\n{report}");
    assert_eq!(result.cases.len(), fixtures.len());
    let telemetry = result.others.len();
    match mode {
        "off" => assert_eq!(telemetry, 0, "mode off sent {:?}", result.others),
        _ => assert!(telemetry > 0, "mode official sent no telemetry"),
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
    use iflow_actix::align::HeaderRule;
    use iflow_actix::align::compare::DiffKind;
    let mut fixture = load_dir(Path::new("tests/fixtures/official"))
        .expect("fixtures")
        .into_iter()
        .find(|f| f.name == "glm-5-plain")
        .expect("glm-5-plain");
    fixture.expected.body["temperature"] = serde_json::json!(0.6);
    fixture.expected.headers.push((
        "x-client-type".into(),
        HeaderRule::Exact("iflow-cli".into()),
    ));
    let gateway = Path::new(env!("CARGO_BIN_EXE_iflow-actix"));
    let result = replay::run(&[fixture], gateway, "off").expect("replay");
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
