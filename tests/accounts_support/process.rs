//! Runs the real `iflow-actix` binary: a clean environment (no inherited
//! IFLOW_* or RUST_LOG), HOME, data dir and working directory in a temp dir,
//! every wait bounded, output read continuously by threads.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_iflow-actix");
pub const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// Temp dirs for one test and the environment the binary gets.
pub struct TestEnv {
    root: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl TestEnv {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "cwd"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let mut vars = BTreeMap::new();
        vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        vars.insert(
            "HOME".into(),
            root.path().join("home").display().to_string(),
        );
        vars.insert(
            "IFLOW_DATA_DIR".into(),
            root.path().join("data").display().to_string(),
        );
        Self { root, vars }
    }

    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn unset(&mut self, name: &str) -> &mut Self {
        self.vars.remove(name);
        self
    }

    pub fn set_all(&mut self, vars: Vec<(String, String)>) -> &mut Self {
        self.vars.extend(vars);
        self
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn accounts_dir(&self) -> PathBuf {
        self.data_dir().join("accounts")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .envs(&self.vars)
            .current_dir(self.root.path().join("cwd"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the binary; its stdin stays open until closed or dropped.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::new(self.command(args).spawn().unwrap())
    }

    /// Runs the binary to its end with `stdin` as input (closed after).
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Ran {
        let mut running = self.spawn(args);
        running.write_stdin(stdin);
        running.close_stdin();
        running.wait(CLI_TIMEOUT)
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, "")
    }

    /// `serve` on 127.0.0.1 and a free port, once it says it listens.
    pub fn serve(&self) -> Server {
        let mut running = self.spawn(&["serve", "--host", "127.0.0.1", "--port", "0"]);
        let line = running.wait_stderr_line("listening on http://127.0.0.1:", CLI_TIMEOUT);
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { running, port }
    }

    /// Every account file, parsed, keyed by file stem; panics on invalid JSON.
    pub fn accounts(&self) -> BTreeMap<String, Value> {
        let mut found = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.accounts_dir()) else {
            return found;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON ({e}): {text}"));
            found.insert(name.trim_end_matches(".json").to_string(), json);
        }
        found
    }

    pub fn account(&self, uuid: &str) -> Value {
        let path = self.accounts_dir().join(format!("{uuid}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Writes an account file as another tool (or an older version) would.
    pub fn write_account(&self, account: &Value) {
        std::fs::create_dir_all(self.accounts_dir()).unwrap();
        let uuid = account["uuid"].as_str().unwrap();
        let path = self.accounts_dir().join(format!("{uuid}.json"));
        std::fs::write(path, serde_json::to_vec_pretty(account).unwrap()).unwrap();
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn assert_ok(&self) -> &Self {
        assert!(self.status.success(), "expected success, got {self:#?}");
        self
    }

    pub fn assert_failed(&self) -> &Self {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "expected a non-zero exit, got {self:#?}"
        );
        self
    }

    /// The uuid printed by `token import`/`token login` ("… account <uuid> (…").
    pub fn account_uuid(&self) -> String {
        self.stdout
            .split_whitespace()
            .find(|w| w.len() == 36 && uuid::Uuid::parse_str(w).is_ok())
            .unwrap_or_else(|| panic!("no uuid in {self:#?}"))
            .to_string()
    }
}

type Lines = (Arc<Mutex<String>>, Receiver<String>);

fn read_lines(stream: impl Read + Send + 'static) -> Lines {
    let all = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = channel();
    let sink = all.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    (all, rx)
}

/// A running binary whose output is drained continuously.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

impl Running {
    fn new(mut child: Child) -> Self {
        let stdin = child.stdin.take();
        let stdout = read_lines(child.stdout.take().unwrap());
        let stderr = read_lines(child.stderr.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn write_stdin(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn wait_line(lines: &Lines, what: &str, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.1.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no {what} line with {pattern:?} within {timeout:?}; {what} so far:\n{}",
                    lines.0.lock().unwrap()
                ),
            }
        }
    }

    pub fn wait_stdout_line(&mut self, pattern: &str, timeout: Duration) -> String {
        Self::wait_line(&self.stdout, "stdout", pattern, timeout)
    }

    pub fn wait_stderr_line(&mut self, pattern: &str, timeout: Duration) -> String {
        Self::wait_line(&self.stderr, "stderr", pattern, timeout)
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Closes stdin, waits for the exit, then for the output readers' EOF.
    pub fn wait(mut self, timeout: Duration) -> Ran {
        self.close_stdin();
        self.wait_stdin_open(timeout)
    }

    /// Like [`Running::wait`] but stdin stays open, as a terminal nobody types in.
    pub fn wait_stdin_open(mut self, timeout: Duration) -> Ran {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout.0.lock().unwrap(),
                    self.stderr.0.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The readers end at EOF; draining the channels waits for them.
        for lines in [&self.stdout, &self.stderr] {
            while lines.1.recv_timeout(Duration::from_secs(5)).is_ok() {}
        }
        Ran {
            status,
            stdout: self.stdout.0.lock().unwrap().clone(),
            stderr: self.stderr.0.lock().unwrap().clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `serve`.
pub struct Server {
    pub running: Running,
    pub port: u16,
}

impl Server {
    /// SIGTERM (graceful stop: usage counters are written), then the exit.
    pub fn terminate(self) -> Ran {
        let pid = self.running.pid().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success(), "kill -TERM {pid} failed");
        self.running.wait(CLI_TIMEOUT)
    }
}
