//! `align diff`: the replay of the official-client baselines, for a human
//! (or, with `--json`, for a script).

mod print;

use super::AlignCommand;
use crate::align::fixture::{check_links, load_dir, load_telemetry};
use crate::align::replay;

#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("{0}")]
    Setup(String),
    #[error("{0} of {1} cases and {2} of {3} telemetry sequences differ from the baseline")]
    Differs(usize, usize, usize, usize),
}

pub fn run(cmd: AlignCommand) -> Result<(), AlignError> {
    let AlignCommand::Diff {
        case,
        json,
        fixtures,
        mode,
    } = cmd;
    let mut all = load_dir(&fixtures).map_err(AlignError::Setup)?;
    let telemetry = load_telemetry(&fixtures.join("telemetry")).map_err(AlignError::Setup)?;
    check_links(&all, &telemetry).map_err(AlignError::Setup)?;
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
    let replay = replay::run(&all, &telemetry, &me, &mode).map_err(AlignError::Setup)?;
    let failing = replay
        .cases
        .iter()
        .filter(|c| c.error.is_some() || !c.differences.is_empty())
        .count();
    let failing_telemetry = replay
        .telemetry
        .iter()
        .filter(|t| !t.differences.is_empty())
        .count();
    if json {
        say!(
            "{}",
            serde_json::json!({
                "mode": mode,
                "cases": replay.cases,
                "telemetry": replay.telemetry,
                "other_requests": replay.others.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
            })
        );
    } else {
        for result in &replay.cases {
            print::case(result);
        }
        for result in &replay.telemetry {
            print::telemetry(result);
        }
        say!(
            "{} cases, {} identical up to dynamic fields, {} differ (mode {mode})",
            replay.cases.len(),
            replay.cases.len() - failing,
            failing
        );
        if mode == "official" {
            say!(
                "{} telemetry sequences, {} differ; {} telemetry requests in all",
                replay.telemetry.len(),
                failing_telemetry,
                replay.others.len()
            );
        }
    }
    if failing + failing_telemetry > 0 {
        return Err(AlignError::Differs(
            failing,
            replay.cases.len(),
            failing_telemetry,
            replay.telemetry.len(),
        ));
    }
    Ok(())
}
