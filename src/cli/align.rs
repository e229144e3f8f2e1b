//! `align diff`: the replay of the official-client baselines, for a human.

use super::AlignCommand;
use crate::align::Fixture;
use crate::align::compare::DiffKind;
use crate::align::fixture::{HeaderRule, TRANSPORT_HEADERS, load_dir};
use crate::align::replay::{self, CaseResult};

#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("{0}")]
    Setup(String),
    #[error("{0} of {1} cases differ from the baseline")]
    Differs(usize, usize),
}

pub fn run(cmd: AlignCommand) -> Result<(), AlignError> {
    let AlignCommand::Diff {
        case,
        json,
        fixtures,
        mode,
    } = cmd;
    let mut all = load_dir(&fixtures).map_err(AlignError::Setup)?;
    if let Some(only) = &case {
        let only = only.strip_suffix(".json").unwrap_or(only);
        all.retain(|f| f.name == only || f.file_stem.as_deref() == Some(only));
        if all.is_empty() {
            return Err(AlignError::Setup(format!(
                "no case named {only:?} in {}",
                fixtures.display()
            )));
        }
    }
    let me = std::env::current_exe().map_err(|e| AlignError::Setup(e.to_string()))?;
    let replay = replay::run(&all, &me, &mode).map_err(AlignError::Setup)?;
    let failing = replay
        .cases
        .iter()
        .filter(|c| c.error.is_some() || !c.differences.is_empty())
        .count();
    if json {
        say!(
            "{}",
            serde_json::json!({
                "mode": mode,
                "cases": replay.cases,
                "other_requests": replay.others.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
            })
        );
    } else {
        for (fixture, result) in all.iter().zip(&replay.cases) {
            print_case(fixture, result);
        }
        say!(
            "{} cases, {} identical up to dynamic fields, {} differ (mode {mode})",
            replay.cases.len(),
            replay.cases.len() - failing,
            failing
        );
    }
    if failing > 0 {
        return Err(AlignError::Differs(failing, replay.cases.len()));
    }
    Ok(())
}

fn print_case(fixture: &Fixture, result: &CaseResult) {
    let verdict = match (&result.error, result.differences.len()) {
        (Some(e), _) => format!("NOT COMPARED: {e}"),
        (None, 0) => "same".into(),
        (None, n) => format!("{n} differences"),
    };
    say!("== {}: {verdict}", fixture.name);
    if !fixture.description.is_empty() {
        say!("   {}", fixture.description);
    }
    let Some(captured) = &result.captured else {
        say!();
        return;
    };
    say!("   {:<20} {:<42} GATEWAY", "HEADER", "BASELINE");
    for (name, rule) in &fixture.expected.headers {
        let baseline = match rule {
            HeaderRule::Exact(v) => v.clone(),
            HeaderRule::Dynamic { dynamic } => format!("<{dynamic:?}>"),
        };
        let sent = captured.header(name).unwrap_or("(missing)");
        say!(
            "   {:<20} {:<42} {}",
            name,
            clip(&baseline, 42),
            clip(sent, 60)
        );
    }
    for (name, value) in &captured.headers {
        if !fixture.expected.headers.iter().any(|(n, _)| n == name) {
            let note = if TRANSPORT_HEADERS.contains(&name.as_str()) {
                "(transport, allowed)"
            } else {
                "(not in baseline)"
            };
            say!("   {:<20} {:<42} {}", name, note, clip(value, 60));
        }
    }
    say!("   body sent: {}", String::from_utf8_lossy(&captured.body));
    for d in &result.differences {
        let kind = match d.kind {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Changed => "changed",
            DiffKind::BadFormat => "bad format",
        };
        say!(
            "   ! {kind:<10} {}: baseline {} / gateway {}",
            d.place,
            d.expected.as_deref().unwrap_or("-"),
            d.actual.as_deref().unwrap_or("-")
        );
    }
    say!();
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
