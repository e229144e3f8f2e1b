//! Gateway benchmark: a fast mock upstream, the real gateway (release
//! build) and a load generator, all on 127.0.0.1 and bounded in time. Each
//! scenario alternates phases straight to the mock and through the gateway
//! in the same run, so both see the same machine. Writes a Markdown and a
//! JSON report (see docs/benchmarks.md).
//!
//! `cargo bench --bench gateway`; `BENCH_SECONDS` sets the phase length
//! (default 3), `BENCH_REPORT` the report directory (default target/bench).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod floor;
mod load;
mod mock;
mod procfs;
mod report;

use load::{PhaseResult, Target};

// The same allocator as the gateway's binary, so that the actix floor (this
// binary, started again) differs from the gateway only in the gateway's work.
// The client and the mock use it too.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Scenario {
    pub name: &'static str,
    pub model: &'static str,
    pub stream: bool,
    pub concurrency: usize,
    /// The connections' first requests are spread evenly over this long
    /// (one paced stream's length), so streams arrive steadily instead of
    /// all at once; `BENCH_BURST=1` starts them together.
    pub spread: Duration,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "non-stream, concurrency 1",
        model: "bench-ns",
        stream: false,
        concurrency: 1,
        spread: Duration::ZERO,
    },
    Scenario {
        name: "non-stream, concurrency 64",
        model: "bench-ns",
        stream: false,
        concurrency: 64,
        spread: Duration::ZERO,
    },
    Scenario {
        name: "20-chunk stream, concurrency 64",
        model: "bench-s20",
        stream: true,
        concurrency: 64,
        spread: Duration::ZERO,
    },
    Scenario {
        name: "50 ms-paced stream, concurrency 256",
        model: "bench-s50",
        stream: true,
        concurrency: 256,
        spread: Duration::from_secs(1),
    },
    Scenario {
        name: "50 ms-paced stream, concurrency 1000",
        model: "bench-s50",
        stream: true,
        concurrency: 1000,
        spread: Duration::from_secs(1),
    },
];

/// What one scenario measured, per target.
#[derive(Default)]
pub struct Measured {
    pub direct: PhaseResult,
    pub gateway: PhaseResult,
    /// Gateway CPU (user and system) spent in its phases.
    pub gateway_cpu: procfs::Cpu,
    /// The reference proxies, in the order of [`Reference`]s.
    pub references: Vec<ReferenceRun>,
    /// False for a scenario left out by `BENCH_ONLY` (or the smoke test).
    pub ran: bool,
}

/// A proxy measured beside the gateway for comparison: nginx (when
/// installed) and the actix floor (`floor.rs`).
struct Reference {
    /// Key in the JSON report.
    key: &'static str,
    /// Row name in the Markdown report.
    label: &'static str,
    addr: SocketAddr,
    pid: u32,
}

/// One reference proxy's phases in one scenario.
pub struct ReferenceRun {
    pub key: &'static str,
    pub label: &'static str,
    pub phase: PhaseResult,
    pub cpu: procfs::Cpu,
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(data: &std::path::Path) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iflow-actix"));
    cmd.env_clear();
    // Worker count is the one setting worth varying between runs.
    if let Some(workers) = std::env::var_os("IFLOW_WORKERS") {
        cmd.env("IFLOW_WORKERS", workers);
    }
    let mut child = cmd
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IFLOW_CONCURRENCY", "10000")
        .env("IFLOW_QUEUE_SIZE", "100000")
        // Only the address line: per-request logging is not what is measured.
        .env("RUST_LOG", "warn,iflow_actix::http::server=info")
        .current_dir(data)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1)
                && let Some(addr) = rest
                    .split(' ')
                    .next()
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            {
                let _ = tx.send(addr);
            } else if line.contains("WARN")
                || line.contains("ERROR")
                || line.contains("panicked")
                || line.starts_with("error")
            {
                eprintln!("gateway: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("gateway address");
    (Proc(child), addr)
}

fn body(s: &Scenario) -> String {
    format!(
        r#"{{"model":"{}","stream":{},"messages":[{{"role":"user","content":"Explain what a Rust lifetime is in one sentence."}}]}}"#,
        s.model, s.stream
    )
}

fn main() {
    floor::serve_if_child();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs
    // this binary without it: then it is a smoke test of the benchmark
    // itself (two short scenarios, debug build), not a measurement.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds: u64 = match smoke {
        true => 1,
        false => std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    };
    let phase = Duration::from_secs(seconds.max(1));
    let default_dir = if smoke {
        "target/bench-smoke"
    } else {
        "target/bench"
    };
    let report_dir =
        PathBuf::from(std::env::var("BENCH_REPORT").unwrap_or_else(|_| default_dir.into()));
    let mock_port = mock::start();
    let mock_addr: SocketAddr = ([127, 0, 0, 1], mock_port).into();

    let data = std::env::temp_dir().join(format!("iflow-bench-{}", std::process::id()));
    let store = iflow_actix::store::AccountStore::open(&data).expect("store");
    let account = iflow_actix::store::Account::new(
        iflow_actix::secret::Secret::new("sk-bench-0000000000000000"),
        format!("http://{mock_addr}/v1"),
        iflow_actix::store::AuthType::Iflow,
        chrono::Utc::now(),
    );
    store.create(&account).expect("account");
    let (gateway, gateway_addr) = start_gateway(&data);
    let gw_pid = gateway.0.id();
    let nginx = procfs::Nginx::start(mock_port);
    // BENCH_FLOOR=0 leaves the actix floor out.
    let floor = (std::env::var("BENCH_FLOOR").as_deref() != Ok("0"))
        .then(|| floor::Floor::start(mock_addr));
    let mut references = Vec::new();
    if let Some(n) = &nginx {
        references.push(Reference {
            key: "nginx",
            label: "nginx",
            addr: n.addr,
            pid: n.pid(),
        });
    }
    if let Some(f) = &floor {
        references.push(Reference {
            key: "actix_floor",
            label: "actix floor",
            addr: f.addr,
            pid: f.pid(),
        });
    }
    let rss_start = procfs::rss_kib(gw_pid, "VmRSS");

    let direct = Target {
        addr: mock_addr,
        path: "/v1/chat/completions".into(),
        bearer: None,
    };
    let through = Target {
        addr: gateway_addr,
        path: "/v1/chat/completions".into(),
        bearer: Some(account.uuid.clone()),
    };
    // Warm both paths (connections, allocator) before measuring.
    load::run(
        through.clone(),
        body(&SCENARIOS[1]),
        64,
        Duration::from_millis(500),
        Duration::ZERO,
    );
    load::run(
        direct.clone(),
        body(&SCENARIOS[1]),
        64,
        Duration::from_millis(500),
        Duration::ZERO,
    );

    // BENCH_ONLY=2 runs just scenario 2 (1-based), e.g. to profile it;
    // BENCH_ONLY=2,3 runs two.
    let only: Vec<usize> = match smoke {
        true => vec![1, 3],
        false => match std::env::var("BENCH_ONLY") {
            Ok(list) => list
                .split(',')
                .map(|n| match n.trim().parse() {
                    Ok(i) if (1..=SCENARIOS.len()).contains(&i) => i,
                    _ => panic!(
                        "BENCH_ONLY={list:?}: scenario numbers 1 to {} separated by commas",
                        SCENARIOS.len()
                    ),
                })
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    let mut results = Vec::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        if !only.is_empty() && !only.contains(&(i + 1)) {
            results.push(Measured::default());
            continue;
        }
        eprintln!(
            "running: {} ({} s per phase, 2 rounds)",
            s.name,
            phase.as_secs()
        );
        let mut m = Measured {
            ran: true,
            references: references
                .iter()
                .map(|r| ReferenceRun {
                    key: r.key,
                    label: r.label,
                    phase: PhaseResult::default(),
                    cpu: procfs::Cpu::default(),
                })
                .collect(),
            ..Measured::default()
        };
        for _round in 0..2 {
            merge(
                &mut m.direct,
                load::run(direct.clone(), body(s), s.concurrency, phase, spread(s)),
            );
            let before = procfs::cpu(gw_pid);
            merge(
                &mut m.gateway,
                load::run(through.clone(), body(s), s.concurrency, phase, spread(s)),
            );
            m.gateway_cpu += procfs::cpu(gw_pid).since(before);
            for (r, run) in references.iter().zip(&mut m.references) {
                let before = procfs::cpu(r.pid);
                let target = Target {
                    addr: r.addr,
                    path: "/v1/chat/completions".into(),
                    bearer: None,
                };
                let phase = load::run(target, body(s), s.concurrency, phase, spread(s));
                run.cpu += procfs::cpu(r.pid).since(before);
                merge(&mut run.phase, phase);
            }
        }
        results.push(m);
    }
    let peak_rss = procfs::rss_kib(gw_pid, "VmHWM");
    drop(gateway);
    drop(nginx);
    drop(floor);
    let _ = std::fs::remove_dir_all(&data);

    let machine = procfs::machine();
    let text = report::markdown(SCENARIOS, &results, rss_start, peak_rss, &machine, seconds);
    let json = report::json(SCENARIOS, &results, rss_start, peak_rss, &machine, seconds);
    std::fs::create_dir_all(&report_dir).expect("report dir");
    std::fs::write(report_dir.join("report.md"), &text).expect("write report");
    std::fs::write(report_dir.join("report.json"), json.to_string()).expect("write report");
    println!("{text}");
    println!("(written to {}/report.{{md,json}})", report_dir.display());
    if smoke {
        for i in &only {
            let m = &results[i - 1];
            let name = SCENARIOS[i - 1].name;
            assert!(
                m.gateway.requests > 0 && m.direct.requests > 0,
                "{name}: nothing measured"
            );
            assert_eq!(m.gateway.errors, 0, "{name}: gateway errors");
            assert_eq!(m.direct.errors, 0, "{name}: direct errors");
            for r in &m.references {
                assert!(
                    r.phase.requests > 0,
                    "{name}: nothing measured by {}",
                    r.label
                );
                assert_eq!(r.phase.errors, 0, "{name}: {} errors", r.label);
            }
        }
        // A target whose scenario was left out is reported as not run, never
        // as met on an empty measurement.
        let targets = json["targets"].as_array().expect("targets");
        let run: Vec<bool> = targets.iter().map(|t| !t["met"].is_null()).collect();
        for t in targets {
            assert_eq!(
                t["met"].is_null(),
                t["measured"].is_null(),
                "a target not run has no measurement: {t}"
            );
        }
        assert_eq!(
            run,
            [false, true, false, false, false, false],
            "targets of the smoke run's scenarios (1 and 3): {targets:?}"
        );
        println!("benchmark smoke test passed (run `cargo bench --bench gateway` to measure)");
    }
}

/// How the scenario's connections start: spread (the default) or, with
/// `BENCH_BURST=1`, all at once.
pub fn spread(s: &Scenario) -> Duration {
    if burst() { Duration::ZERO } else { s.spread }
}

pub fn burst() -> bool {
    std::env::var("BENCH_BURST").is_ok_and(|v| v == "1")
}

fn merge(into: &mut PhaseResult, r: PhaseResult) {
    into.requests += r.requests;
    into.errors += r.errors;
    into.elapsed += r.elapsed;
    into.latencies.extend(r.latencies);
    into.ttfbs.extend(r.ttfbs);
    into.chunk_delays.extend(r.chunk_delays);
}
