//! Command-line definitions (clap). Every option has an environment variable
//! fallback, listed in `.env.example`. The commands themselves live in the
//! sibling modules.

/// Prints a line on stdout. A closed pipe (`iflow-actix token list | head -1`)
/// is not an error worth a panic, so write failures are ignored.
macro_rules! say {
    () => {
        $crate::cli::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
}

pub mod align;
pub mod keys;
pub mod token;
pub mod usage;

use crate::actors::refresher::RefreshSettings;
use crate::config::{Config, MaybeProxy, ProxyParser, duration, key_name, parse_with};
use crate::oauth::OAuthEndpoints;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "iflow-actix",
    version,
    about = "OpenAI-compatible gateway for iFlow accounts"
)]
pub struct Cli {
    /// Directory holding `accounts/` (one JSON file per account).
    #[arg(long, global = true, env = "IFLOW_DATA_DIR", default_value = "./data", value_parser = parse_with("IFLOW_DATA_DIR", data_dir))]
    pub data_dir: PathBuf,

    /// Log level: off, error, warn, info, debug or trace (RUST_LOG, when set,
    /// wins). Default: info for serve, warn for the other commands, whose
    /// output is their result.
    #[arg(long, global = true, env = "IFLOW_LOG_LEVEL", value_parser = parse_with("IFLOW_LOG_LEVEL", log_level))]
    pub log_level: Option<log::LevelFilter>,

    /// Proxy for calls to iFlow (chat, OAuth): http://[user:pass@]host:port or socks5://[user:pass@]host:port.
    #[arg(long, global = true, env = "IFLOW_UPSTREAM_PROXY", default_value = "", value_parser = ProxyParser)]
    pub upstream_proxy: MaybeProxy,

    #[command(flatten)]
    pub oauth: OAuthEndpoints,

    #[command(flatten)]
    pub refresh: RefreshSettings,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Settings that are each valid but contradict each other; checked once
    /// they are all read, before anything runs.
    pub fn contradiction(&self) -> Option<String> {
        let longer = |a: (&str, Duration), b: (&str, Duration)| {
            (a.1 > b.1).then(|| {
                format!(
                    "{} ({}) is longer than {} ({})",
                    a.0,
                    humantime::format_duration(a.1),
                    b.0,
                    humantime::format_duration(b.1)
                )
            })
        };
        let refresh = longer(
            ("IFLOW_REFRESH_RETRY_MIN", self.refresh.refresh_retry_min),
            ("IFLOW_REFRESH_RETRY_MAX", self.refresh.refresh_retry_max),
        );
        let cooldown = match &self.command {
            Command::Serve(config) => longer(
                ("IFLOW_COOLDOWN_BASE", config.cooldown_base),
                ("IFLOW_COOLDOWN_MAX", config.cooldown_max),
            ),
            _ => None,
        };
        refresh.or(cooldown)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<Config>),
    /// Manage accounts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage gateway keys (client API keys served by the account pool).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show usage per account, key and model.
    Usage {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Compare the gateway's upstream requests with the official client's.
    #[command(subcommand)]
    Align(AlignCommand),
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List accounts (keys masked).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Import the official CLI's login (`~/.iflow/settings.json`), or a bare key
    /// with `--api-key`. Importing the same key again updates the account.
    Import {
        /// `settings.json` or its folder (default: $IFLOW_HOME or ~/.iflow).
        path: Option<PathBuf>,
        /// Import this API key instead of the official CLI's files.
        #[arg(long, conflicts_with = "path")]
        api_key: Option<String>,
        /// Upstream base URL for `--api-key`.
        #[arg(long, requires = "api_key", default_value = crate::store::DEFAULT_IFLOW_BASE_URL)]
        base_url: String,
        /// Account kind for `--api-key`: `iflow` or `openai` (any OpenAI-compatible API).
        #[arg(long, requires = "api_key", default_value = "iflow", value_parser = ["iflow", "openai"])]
        kind: String,
        /// Models this account serves in the pool (comma-separated, `glm-*`
        /// matches a prefix; default: any).
        #[arg(long, requires = "api_key", value_delimiter = ',')]
        models: Option<Vec<String>>,
    },
    /// Log in with an iFlow account in the browser and store it.
    Login {
        /// Callback port on 127.0.0.1 (default: 11451 or the next free one).
        #[arg(long, env = "OAUTH_CALLBACK_PORT", value_parser = parse_with("OAUTH_CALLBACK_PORT", |s| s.parse::<u16>().map_err(|e| e.to_string())))]
        port: Option<u16>,
        /// No browser on this machine: log in elsewhere and paste the code here.
        #[arg(long)]
        no_browser: bool,
        /// Print the login URL without starting a browser.
        #[arg(long)]
        no_open: bool,
        /// How long to wait for the login.
        #[arg(long, default_value = "5m", value_parser = parse_with("--timeout", duration))]
        timeout: Duration,
    },
    /// Refresh an account's OAuth tokens now (as the server's refresher does).
    Refresh {
        /// Account uuid.
        uuid: String,
    },
    /// Clear an account's cooldown and state so the pool uses it again.
    Reset {
        /// Account uuid.
        uuid: String,
    },
    /// Delete an account file.
    Delete {
        /// Account uuid.
        uuid: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlignCommand {
    /// Replay the baseline cases through this gateway and show the differences.
    Diff {
        /// Only this case (file name without `.json`, or the case's name).
        #[arg(long)]
        case: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Where the baseline cases are.
        #[arg(long, default_value = "tests/fixtures/official")]
        fixtures: PathBuf,
        /// Alignment mode to run the gateway in: off or official.
        #[arg(long, default_value = "off", value_parser = ["off", "official"])]
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; the key itself is printed once and never stored.
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "", value_parser = parse_with("--name", key_name))]
        name: String,
        /// Allowed models, comma-separated (`glm-*` matches a prefix); default: all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests this key may have in flight at once.
        #[arg(long, value_parser = parse_with("--max-concurrency", |s| s.parse::<usize>().map_err(|e| e.to_string()).and_then(|n| if n == 0 { Err("must be at least 1".to_string()) } else { Ok(n) })))]
        max_concurrency: Option<usize>,
        /// Lifetime, e.g. 30d or 12h; default: no expiry.
        #[arg(long, value_parser = parse_with("--expires-in", duration))]
        expires_in: Option<Duration>,
        /// May read /v1/usage and /metrics.
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never the keys themselves).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        /// The key's id (`key-…`), a unique start of it (8+ characters), its
        /// shown prefix (`sk-iflow-…`) or the whole key.
        id: String,
    },
}

fn log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not one of off, error, warn, info, debug, trace"))
}

/// The data directory may not exist yet (it is created), but it must not be
/// empty or name something that is not a directory.
fn data_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_dir() => Err(format!("{s:?} exists and is not a directory")),
        _ => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn env_names(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            env_names(sub, out);
        }
    }

    /// Every setting has an environment variable, and `.env.example` lists
    /// each one, so the example file cannot drift from the code.
    #[test]
    fn env_example_lists_every_variable() {
        let example = include_str!("../../.env.example");
        let mut names = Vec::new();
        env_names(&Cli::command(), &mut names);
        names.sort();
        names.dedup();
        assert!(names.len() > 40, "{names:?}");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !example
                    .lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{n}=")))
            })
            .collect();
        assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
