//! The real `iflow-actix` binary: `serve` as a child process on a free port
//! with its stderr drained into a log the test can read, and the CLI commands.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_iflow-actix");

/// A base command: clean environment, `.env` lookup confined to `cwd`.
pub fn command(cwd: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IFLOW_DATA_DIR", data_dir)
        .env("IFLOW_LOG_LEVEL", "info")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, killing it after 15 s.
pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iflow-actix");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("iflow-actix did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// `token import`; returns the account uuid.
pub fn import(data_dir: &Path, api_key: &str, base_url: &str, kind: &str) -> String {
    let mut cmd = command(data_dir, data_dir);
    cmd.args([
        "token",
        "import",
        "--api-key",
        api_key,
        "--base-url",
        base_url,
        "--kind",
        kind,
    ]);
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split_whitespace()
        .nth(2)
        .map(str::to_string)
        .unwrap_or_else(|| panic!("unexpected import output {stdout:?}"))
}

/// Captured stderr lines, and a way to wait for one.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    cond: Condvar,
}

pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Log>,
}

impl Gateway {
    /// Starts `serve` on 127.0.0.1 with a free port and the given extra
    /// environment; returns once it logged its address (at most 10 s).
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = command(data_dir, data_dir);
        cmd.env("IFLOW_WORKERS", "2")
            .envs(env.iter().copied())
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Log::default());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().expect("log").0.push(line);
                sink.cond.notify_all();
            }
            sink.lines.lock().expect("log").1 = true;
            sink.cond.notify_all();
        });
        let mut gw = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        let found = gw.wait_log(Duration::from_secs(10), |l| {
            l.contains("listening on http://")
        });
        let text = gw.log();
        assert!(found, "gateway did not start:\n{text}");
        let addr = text
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the log:\n{text}"));
        gw.addr = addr;
        gw
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lines.lock().expect("log").0.join("\n")
    }

    /// Waits until the whole log satisfies `pred`; `false` on timeout or
    /// when the process closed stderr first.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let guard = self.log.lines.lock().expect("log");
        let (guard, _) = self
            .log
            .cond
            .wait_timeout_while(guard, timeout, |(lines, closed)| {
                !*closed && !pred(&lines.join("\n"))
            })
            .expect("log");
        pred(&guard.0.join("\n"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (at most `timeout`) for the process to exit; then lets the
    /// reader thread take the last log lines.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                self.wait_log(Duration::from_secs(2), |_| false);
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub fn terminate(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        self.send_sigterm();
        let exit = self.wait_exit(timeout)?;
        Some((exit, started.elapsed()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
