//! Turns the measurements into numbers, checks them against the targets
//! and writes the Markdown and JSON reports.

use crate::load::PhaseResult;
use crate::procfs::Cpu;
use crate::{Measured, Scenario};
use serde_json::{Value, json};
use std::fmt::Write;
use std::time::Duration;

fn percentile(values: &[u32], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i.min(v.len() - 1)])
}

fn mean(values: &[u32]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64
}

fn rps(r: &PhaseResult) -> f64 {
    r.requests as f64 / r.elapsed.as_secs_f64().max(1e-9)
}

fn per_request_us(cpu: Duration, r: &PhaseResult) -> f64 {
    cpu.as_secs_f64() * 1e6 / (r.requests.max(1) as f64)
}

/// user + system CPU per request: the figure the targets are set on.
fn cpu_per_request_us(cpu: Cpu, r: &PhaseResult) -> f64 {
    per_request_us(cpu.total(), r)
}

/// One target: what is measured, against which limit.
struct Check {
    what: &'static str,
    measured: f64,
    limit: f64,
    unit: &'static str,
    lower_is_better: bool,
    /// The scenario the figure comes from was run (`BENCH_ONLY` and the
    /// smoke test run only some).
    ran: bool,
}

impl Check {
    /// Met, missed, or `None` when the scenario was not run.
    fn verdict(&self) -> Option<bool> {
        if !self.ran {
            return None;
        }
        Some(if self.lower_is_better {
            self.measured <= self.limit
        } else {
            self.measured >= self.limit
        })
    }
}

fn checks(results: &[Measured], peak_rss_kib: u64) -> Vec<Check> {
    let ns64 = &results[1];
    let s20 = &results[2];
    let s256 = &results[3];
    let s1000 = &results[4];
    vec![
        Check {
            what: "gateway CPU per non-stream request (concurrency 64)",
            ran: ns64.ran,
            measured: cpu_per_request_us(ns64.gateway_cpu, &ns64.gateway),
            limit: 25.0,
            unit: "µs",
            lower_is_better: true,
        },
        Check {
            what: "gateway CPU per 20-chunk stream (concurrency 64)",
            ran: s20.ran,
            measured: cpu_per_request_us(s20.gateway_cpu, &s20.gateway),
            limit: 60.0,
            unit: "µs",
            lower_is_better: true,
        },
        Check {
            what: "added p99 time to first byte, 50 ms-paced streams at 256",
            ran: s256.ran,
            measured: (percentile(&s256.gateway.ttfbs, 0.99)
                - percentile(&s256.direct.ttfbs, 0.99))
                / 1000.0,
            limit: 1.0,
            unit: "ms",
            lower_is_better: true,
        },
        Check {
            what: "per-chunk relay overhead, 50 ms-paced streams at 256 (mean)",
            ran: s256.ran,
            measured: (mean(&s256.gateway.chunk_delays) - mean(&s256.direct.chunk_delays)) / 1000.0,
            limit: 20.0,
            unit: "µs",
            lower_is_better: true,
        },
        Check {
            what: "non-stream throughput at 64, share of direct-to-mock",
            ran: ns64.ran,
            measured: 100.0 * rps(&ns64.gateway) / rps(&ns64.direct).max(1e-9),
            limit: 40.0,
            unit: "%",
            lower_is_better: false,
        },
        Check {
            what: "gateway peak RSS (1000 open streams included)",
            // Without the 1000-stream scenario the peak says nothing.
            ran: s1000.ran,
            measured: peak_rss_kib as f64 / 1024.0,
            limit: 60.0,
            unit: "MB",
            lower_is_better: true,
        },
    ]
}

fn row(out: &mut String, name: &str, r: &PhaseResult, cpu: Option<Cpu>, stream: bool) {
    let ms = |v: f64| v / 1000.0;
    let _ = writeln!(
        out,
        "| {name} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
        rps(r),
        ms(percentile(&r.latencies, 0.5)),
        ms(percentile(&r.latencies, 0.99)),
        ms(percentile(&r.latencies, 0.999)),
        if stream {
            format!(
                "{:.3} / {:.3}",
                ms(percentile(&r.ttfbs, 0.5)),
                ms(percentile(&r.ttfbs, 0.99))
            )
        } else {
            "-".into()
        },
        cpu.map_or("-".into(), |c| format!(
            "{:.1} ({:.1})",
            cpu_per_request_us(c, r),
            per_request_us(c.system, r)
        )),
        r.errors
    );
}

pub fn markdown(
    scenarios: &[Scenario],
    results: &[Measured],
    rss_start_kib: u64,
    peak_rss_kib: u64,
    machine: &str,
    seconds: u64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Gateway benchmark\n");
    let _ = writeln!(
        out,
        "Machine: {machine}. Phases of {seconds} s, two rounds each, direct and gateway interleaved.\n"
    );
    for (s, m) in scenarios.iter().zip(results) {
        let _ = writeln!(out, "## {}\n", s.name);
        if !m.ran {
            let _ = writeln!(
                out,
                "Not run (left out by `BENCH_ONLY` or the smoke test).\n"
            );
            continue;
        }
        let spread = crate::spread(s);
        if !spread.is_zero() {
            let _ = writeln!(
                out,
                "Connections start spread evenly over {} ms (`BENCH_BURST=1`: all at once).\n",
                spread.as_millis()
            );
        }
        let _ = writeln!(
            out,
            "| target | req/s | p50 ms | p99 ms | p99.9 ms | TTFB p50 / p99 ms | CPU µs/req (of it system) | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        row(&mut out, "direct to mock", &m.direct, None, s.stream);
        row(
            &mut out,
            "gateway",
            &m.gateway,
            Some(m.gateway_cpu),
            s.stream,
        );
        for r in &m.references {
            row(&mut out, r.label, &r.phase, Some(r.cpu), s.stream);
        }
        let added = |p: f64| {
            (percentile(&m.gateway.latencies, p) - percentile(&m.direct.latencies, p)) / 1000.0
        };
        let _ = writeln!(
            out,
            "\nAdded latency: p50 {:.3} ms, p99 {:.3} ms.",
            added(0.5),
            added(0.99)
        );
        if s.stream {
            let ttfb = |p: f64| {
                (percentile(&m.gateway.ttfbs, p) - percentile(&m.direct.ttfbs, p)) / 1000.0
            };
            let _ = writeln!(
                out,
                "Added time to first byte: p50 {:.3} ms, p99 {:.3} ms.",
                ttfb(0.5),
                ttfb(0.99)
            );
            if !m.gateway.chunk_delays.is_empty() {
                let _ = writeln!(
                    out,
                    "Per-chunk delivery delay: direct mean {:.1} µs, gateway mean {:.1} µs (relay overhead {:.1} µs; p99 {:.1} vs {:.1} µs).",
                    mean(&m.direct.chunk_delays) / 1000.0,
                    mean(&m.gateway.chunk_delays) / 1000.0,
                    (mean(&m.gateway.chunk_delays) - mean(&m.direct.chunk_delays)) / 1000.0,
                    percentile(&m.direct.chunk_delays, 0.99) / 1000.0,
                    percentile(&m.gateway.chunk_delays, 0.99) / 1000.0,
                );
            }
        }
        let _ = writeln!(
            out,
            "Gateway CPU: {:.3} s per 1000 requests.\n",
            cpu_per_request_us(m.gateway_cpu, &m.gateway) / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "Gateway memory: {:.1} MB RSS at start, {:.1} MB peak.\n",
        rss_start_kib as f64 / 1024.0,
        peak_rss_kib as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "## Targets\n\n| target | measured | limit | result |\n|---|---|---|---|"
    );
    for c in checks(results, peak_rss_kib) {
        let verdict = match c.verdict() {
            None => "not run".to_string(),
            Some(true) => "met".to_string(),
            Some(false) if c.lower_is_better => {
                format!("MISSED by {:.1} {}", c.measured - c.limit, c.unit)
            }
            Some(false) => format!("MISSED by {:.1} {}", c.limit - c.measured, c.unit),
        };
        let measured = if c.ran {
            format!("{:.2} {}", c.measured, c.unit)
        } else {
            "–".to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {measured} | {} {} {} | {verdict} |",
            c.what,
            if c.lower_is_better { "≤" } else { "≥" },
            c.limit,
            c.unit
        );
    }
    out
}

fn phase_json(r: &PhaseResult, cpu: Option<Cpu>) -> Value {
    json!({
        "requests": r.requests,
        "errors": r.errors,
        "seconds": r.elapsed.as_secs_f64(),
        "requests_per_second": rps(r),
        "latency_ms": { "p50": percentile(&r.latencies, 0.5) / 1000.0, "p99": percentile(&r.latencies, 0.99) / 1000.0, "p999": percentile(&r.latencies, 0.999) / 1000.0 },
        "ttfb_ms": { "p50": percentile(&r.ttfbs, 0.5) / 1000.0, "p99": percentile(&r.ttfbs, 0.99) / 1000.0 },
        "chunk_delay_us": { "mean": mean(&r.chunk_delays) / 1000.0, "p99": percentile(&r.chunk_delays, 0.99) / 1000.0 },
        "cpu_us_per_request": cpu.map(|c| cpu_per_request_us(c, r)),
        "cpu_system_us_per_request": cpu.map(|c| per_request_us(c.system, r)),
    })
}

pub fn json(
    scenarios: &[Scenario],
    results: &[Measured],
    rss_start_kib: u64,
    peak_rss_kib: u64,
    machine: &str,
    seconds: u64,
) -> Value {
    let runs: Vec<Value> = scenarios
        .iter()
        .zip(results)
        .map(|(s, m)| {
            let mut run = json!({
                "scenario": s.name,
                "ran": m.ran,
                "concurrency": s.concurrency,
                "start_spread_ms": crate::spread(s).as_millis(),
                "stream": s.stream,
                "direct": phase_json(&m.direct, None),
                "gateway": phase_json(&m.gateway, Some(m.gateway_cpu)),
            });
            for r in &m.references {
                run[r.key] = phase_json(&r.phase, Some(r.cpu));
            }
            run
        })
        .collect();
    let targets: Vec<Value> = checks(results, peak_rss_kib)
        .into_iter()
        .map(|c| json!({ "target": c.what, "measured": c.ran.then_some(c.measured), "limit": c.limit, "unit": c.unit, "met": c.verdict() }))
        .collect();
    json!({
        "machine": machine,
        "phase_seconds": seconds,
        "rss_start_mb": rss_start_kib as f64 / 1024.0,
        "rss_peak_mb": peak_rss_kib as f64 / 1024.0,
        "scenarios": runs,
        "targets": targets,
    })
}
