//! Crash safety of the data directory (docs/benchmarks.md#crash-safety).
//!
//! The real server runs with a 20 ms usage flush (so account files and the
//! usage ledger are rewritten all the time) under request traffic, while the
//! CLI makes acknowledged writes to the same directory (`token import` of
//! existing and new keys, `key create`, `token reset`). The server is
//! SIGKILLed at a random moment, restarted, killed again, `CRASH_CYCLES`
//! times (default 20). After every kill, with the CLI quiet:
//! - every file parses (accounts, keys, ledger) and only the atomic writes'
//!   temp files (`.NAME.tmp-…`) are there besides; no `*.json` is half written;
//! - every CLI change that exited 0 is on disk;
//! - no account's `request_count` and no ledger total went down, and none
//!   is above what the mock upstream actually received for that account.
//!   The ledger is booked when a reply ends, so it is compared exactly; an
//!   account's count is booked when an attempt starts, so each kill may
//!   leave at most one counted attempt per client thread that never reached
//!   the upstream (`CLIENTS` per kill is allowed, and the excess reported).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::gateway::{Gateway, command, import};
use common::mock::Mock;
use iflow_actix::store::{Account, GatewayKey, UsageFile};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INITIAL_ACCOUNTS: usize = 3;
const CLIENTS: usize = 3;
/// The whole test stops starting new cycles after this long.
const TIME_BUDGET: Duration = Duration::from_secs(90);

fn cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn upstream_key(i: usize) -> String {
    format!("sk-crash-{i:03}-0123456789abcdef")
}

/// One request on its own connection; `None` when the server is gone.
fn try_request(addr: SocketAddr, path: &str, token: &str, body: &serde_json::Value) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.to_string();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(raw.as_bytes()).ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// What the CLI was told was done (exit status 0).
#[derive(Default)]
struct Acked {
    /// API key → base URL of its last acknowledged import.
    imports: BTreeMap<String, String>,
    keys: Vec<String>,
    /// uuid → the time just before the last acknowledged reset started.
    resets: HashMap<String, chrono::DateTime<chrono::Utc>>,
    runs: usize,
    failed: usize,
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = command(dir, dir);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = common::gateway::run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("skipping"),
        "the CLI found a broken file: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One acknowledged CLI write, chosen by `n`.
fn cli_write(dir: &Path, mock: &str, n: usize, uuids: &[String], acked: &Mutex<Acked>) {
    let base = format!("{mock}/r{n}");
    match n % 4 {
        0 => {
            // An existing account: its base URL changes.
            let key = upstream_key(n % INITIAL_ACCOUNTS);
            let (ok, _) = cli(
                dir,
                &["token", "import", "--api-key", &key, "--base-url", &base],
            );
            let mut a = acked.lock().unwrap();
            a.runs += 1;
            if ok {
                a.imports.insert(key, base);
            } else {
                a.failed += 1;
            }
        }
        1 => {
            let key = upstream_key(100 + n);
            let (ok, _) = cli(
                dir,
                &["token", "import", "--api-key", &key, "--base-url", mock],
            );
            let mut a = acked.lock().unwrap();
            a.runs += 1;
            if ok {
                a.imports.insert(key, mock.to_string());
            } else {
                a.failed += 1;
            }
        }
        2 => {
            let (ok, out) = cli(dir, &["key", "create", "--name", &format!("k{n}")]);
            let mut a = acked.lock().unwrap();
            a.runs += 1;
            let id = out
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("created "))
                .and_then(|l| l.split_whitespace().next());
            match (ok, id) {
                (true, Some(id)) => a.keys.push(id.to_string()),
                _ => a.failed += 1,
            }
        }
        _ => {
            let uuid = &uuids[n % uuids.len()];
            let before = chrono::Utc::now();
            let (ok, _) = cli(dir, &["token", "reset", uuid]);
            let mut a = acked.lock().unwrap();
            a.runs += 1;
            if ok {
                a.resets.insert(uuid.clone(), before);
            } else {
                a.failed += 1;
            }
        }
    }
}

/// Everything in the data directory, checked: account uuid → account, the
/// key ids, the ledger.
struct Disk {
    accounts: BTreeMap<String, Account>,
    keys: Vec<String>,
    ledger: UsageFile,
    temp_files: usize,
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-") && !name.ends_with(".json")
}

fn read_disk(dir: &Path) -> Disk {
    let mut disk = Disk {
        accounts: BTreeMap::new(),
        keys: Vec::new(),
        ledger: UsageFile::default(),
        temp_files: 0,
    };
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            ["accounts", "keys", "usage"].contains(&name.as_str()),
            "unexpected {name} in the data dir"
        );
        for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let fname = file.file_name().to_string_lossy().into_owned();
            if fname == ".lock" {
                continue;
            }
            if is_temp(&fname) {
                disk.temp_files += 1;
                continue;
            }
            let bytes = std::fs::read(file.path()).unwrap();
            let at = format!("{name}/{fname}");
            assert!(fname.ends_with(".json"), "stray file {at}");
            match name.as_str() {
                "accounts" => {
                    let a = Account::from_json(&bytes)
                        .unwrap_or_else(|e| panic!("{at} does not parse ({e}): {bytes:?}"));
                    assert_eq!(format!("{}.json", a.uuid), fname, "{at}");
                    disk.accounts.insert(a.uuid.clone(), a);
                }
                "keys" => {
                    let k: GatewayKey = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("{at} does not parse ({e}): {bytes:?}"));
                    assert_eq!(format!("{}.json", k.id), fname, "{at}");
                    disk.keys.push(k.id);
                }
                _ => {
                    assert_eq!(fname, "ledger.json", "{at}");
                    disk.ledger = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("{at} does not parse ({e}): {bytes:?}"));
                }
            }
        }
    }
    disk
}

/// Requests the mock received per upstream API key.
fn served(mock: &Mock) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for r in mock.requests() {
        let key = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn ledger_requests(ledger: &UsageFile) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for row in &ledger.rows {
        *out.entry(row.account.clone()).or_insert(0) += row.requests;
    }
    out
}

/// Drives traffic until `stop`: pool key and pinned accounts, OpenAI and
/// Anthropic, stream and not. Counts the 200s.
fn traffic(
    addr: SocketAddr,
    key: String,
    uuids: Vec<String>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut ok = 0;
        while !stop.load(Ordering::Relaxed) {
            let token = match rng.bool() {
                true => key.clone(),
                false => uuids[rng.usize(..uuids.len())].clone(),
            };
            let stream = rng.bool();
            let status = if rng.u8(..4) == 0 {
                let mut body = common::anthropic::user_msg("hi");
                body["stream"] = json!(stream);
                try_request(addr, "/v1/messages", &token, &body)
            } else {
                let mut body = common::user_body("glm-5", "hi");
                body["stream"] = json!(stream);
                try_request(addr, "/v1/chat/completions", &token, &body)
            };
            match status {
                Some(200) => ok += 1,
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        ok
    })
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

#[test]
fn sigkill_during_flushes_and_cli_writes_loses_no_acknowledged_change() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mock = Mock::start();
    let base = mock.base_url();
    let uuids: Vec<String> = (0..INITIAL_ACCOUNTS)
        .map(|i| import(data, &upstream_key(i), &base, "iflow"))
        .collect();
    let (ok, out) = cli(data, &["key", "create", "--name", "traffic"]);
    assert!(ok, "{out}");
    let key = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sk-iflow-"))
        .expect("plain key")
        .to_string();
    let env = [
        ("IFLOW_USAGE_FLUSH_INTERVAL", "20ms"),
        ("IFLOW_STORE_RESCAN_INTERVAL", "100ms"),
        ("IFLOW_CONCURRENCY", "4"),
    ];

    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash_safety: seed {seed} (CRASH_SEED to repeat the kill timing)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut last_counts: HashMap<String, u64> = HashMap::new();
    let mut last_ledger: HashMap<String, u64> = HashMap::new();
    let mut cli_n = 0usize;
    let (mut ran, mut ok_requests, mut max_temp, mut max_excess) = (0, 0, 0, 0u64);
    for cycle in 0..cycles() {
        if started.elapsed() > TIME_BUDGET && cycle >= 5 {
            break;
        }
        let gw = Gateway::start(data, &env);
        let pid = gw.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                traffic(
                    gw.addr,
                    key.clone(),
                    uuids.clone(),
                    stop.clone(),
                    seed ^ (cycle * CLIENTS + c) as u64,
                )
            })
            .collect();
        let writer = {
            let (data, base, uuids, acked, stop) = (
                data.to_path_buf(),
                base.clone(),
                uuids.clone(),
                acked.clone(),
                stop.clone(),
            );
            let first = cli_n;
            std::thread::spawn(move || {
                let mut n = first;
                while !stop.load(Ordering::Relaxed) {
                    cli_write(&data, &base, n, &uuids, &acked);
                    n += 1;
                }
                n
            })
        };
        // Kill at a random moment: soon after start, or well into traffic.
        std::thread::sleep(Duration::from_millis(rng.u64(50..800)));
        kill_9(pid);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            ok_requests += c.join().unwrap();
        }
        cli_n = writer.join().unwrap();
        let mut gw = gw;
        assert!(
            gw.wait_exit(Duration::from_secs(5)).is_some(),
            "the gateway survived kill -9"
        );
        let log = gw.log();
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("skipping"), "a broken file at start:\n{log}");
        ran += 1;

        // The directory as the kill and the CLI left it.
        let disk = read_disk(data);
        max_temp = max_temp.max(disk.temp_files);
        let served = served(&mock);
        let a = acked.lock().unwrap();
        for (api_key, base_url) in &a.imports {
            let found: Vec<&Account> = disk
                .accounts
                .values()
                .filter(|acc| acc.api_key.expose() == api_key)
                .collect();
            assert_eq!(found.len(), 1, "cycle {cycle}: key {api_key}: {found:?}");
            assert_eq!(&found[0].base_url, base_url, "cycle {cycle}: {api_key}");
        }
        for id in &a.keys {
            assert!(disk.keys.contains(id), "cycle {cycle}: key {id} lost");
        }
        for (uuid, before) in &a.resets {
            let at = disk.accounts[uuid].reset_at;
            assert!(
                at.is_some_and(|t| t >= *before),
                "cycle {cycle}: reset of {uuid} lost ({at:?} < {before})"
            );
        }
        let ledger = ledger_requests(&disk.ledger);
        for (uuid, account) in &disk.accounts {
            let got = account.request_count;
            let upstream = served.get(account.api_key.expose()).copied().unwrap_or(0);
            let prev = last_counts.insert(uuid.clone(), got).unwrap_or(0);
            assert!(got >= prev, "cycle {cycle}: {uuid} count {prev} -> {got}");
            let allowed = upstream + (CLIENTS * ran) as u64;
            assert!(
                got <= allowed,
                "cycle {cycle}: {uuid} counts {got} requests, the upstream saw {upstream}"
            );
            max_excess = max_excess.max(got.saturating_sub(upstream));
            let in_ledger = ledger.get(uuid).copied().unwrap_or(0);
            let prev = last_ledger.insert(uuid.clone(), in_ledger).unwrap_or(0);
            assert!(
                in_ledger >= prev,
                "cycle {cycle}: ledger {prev} -> {in_ledger}"
            );
            assert!(
                in_ledger <= upstream,
                "cycle {cycle}: ledger counts {in_ledger} for {uuid}, the upstream saw {upstream}"
            );
        }
    }

    // A last clean run: it starts on what the kills left, serves, and stops.
    let mut gw = Gateway::start(data, &env);
    let status = try_request(
        gw.addr,
        "/v1/chat/completions",
        &key,
        &common::user_body("glm-5", "hi"),
    );
    assert_eq!(status, Some(200));
    let (exit, _) = gw.terminate(Duration::from_secs(10)).expect("exits");
    assert!(exit.success(), "{}", gw.log());
    let disk = read_disk(data);
    let served = served(&mock);
    let counted: u64 = disk.accounts.values().map(|a| a.request_count).sum();
    let upstream: u64 = served.values().sum();
    let a = acked.lock().unwrap();
    eprintln!(
        "crash_safety: {ran} kill cycles in {:.1?}; {} CLI writes ({} refused), {} accounts, \
         {} keys; {ok_requests} requests answered 200, upstream saw {upstream}, files count \
         {counted} (at most {max_excess} above the upstream for one account); at most \
         {max_temp} temp files left by a kill",
        started.elapsed(),
        a.runs,
        a.failed,
        disk.accounts.len(),
        disk.keys.len(),
    );
    assert!(ran >= 5, "only {ran} cycles ran");
    assert!(2 * a.runs >= ran, "the CLI barely ran: {}", a.runs);
    assert_eq!(a.failed, 0, "CLI writes failed");
    assert!(ok_requests > 0, "no request was served");
}
