//! Command-line definitions (clap). Every option has an environment variable
//! fallback, listed in `.env.example`. The commands themselves live in the
//! sibling modules.

pub mod token;

use crate::config::{Config, parse_with};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "iflow-actix",
    version,
    about = "OpenAI-compatible gateway for iFlow accounts"
)]
pub struct Cli {
    /// Directory holding `accounts/` (one JSON file per account).
    #[arg(long, global = true, env = "IFLOW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Log level: error, warn, info, debug or trace (RUST_LOG, when set, wins).
    #[arg(long, global = true, env = "IFLOW_LOG_LEVEL", default_value = "info", value_parser = parse_with("IFLOW_LOG_LEVEL", log_level))]
    pub log_level: log::LevelFilter,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<Config>),
    /// Manage accounts.
    #[command(subcommand)]
    Token(TokenCommand),
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
    /// Add an account from an API key (same key again updates the account).
    Import {
        /// The API key (`sk-…`).
        #[arg(long, env = "IFLOW_IMPORT_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Upstream base URL.
        #[arg(long, default_value = crate::store::DEFAULT_IFLOW_BASE_URL)]
        base_url: String,
        /// Account kind: `iflow` (iFlow API key) or `openai` (any OpenAI-compatible API).
        #[arg(long, default_value = "iflow", value_parser = ["iflow", "openai"])]
        kind: String,
    },
}

fn log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not one of off, error, warn, info, debug, trace"))
}
