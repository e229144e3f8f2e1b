//! Telemetry of the official client (protocol section 9), sent only in
//! alignment mode `official` (`IFLOW_ALIGN_MODE`). It exists solely to look
//! like the official CLI and reports usage to a third party, so it is off
//! by default. Events are fire-and-forget on their own task with a short
//! timeout: they never delay or fail a chat request.

pub mod events;
mod sender;

pub use sender::{RunHandle, Telemetry};

use clap::ValueEnum;

/// The emulated official client's version, sent as `cliVer` in `run_error`.
/// Source: the npm package `@iflow-ai/iflow-cli` 0.5.19, the bundle the
/// protocol notes were read from (iflow-cli-ce commit 0d24a6e).
pub const CLI_VERSION: &str = "0.5.19";

/// The Node.js version string reported as `nodeVersion` (`run_error`) and
/// `node_version` (page view). Source: none pins a value. The official
/// client reports the version of whatever Node.js runs it (`process.version`
/// in its `run_error` builder), so the value differs from one machine to the
/// next, and the protocol notes (section 9) give only its form, `v…`, with
/// no captured value. v22.20.0 is simply a real release of the Node.js 22
/// LTS line, so it looks like an ordinary install; nothing on the server side
/// is known to check it. Override with `IFLOW_NODE_VERSION`.
pub const NODE_VERSION: &str = "v22.20.0";

pub const DEFAULT_GM_URL: &str = "https://gm.mmstat.com";
pub const DEFAULT_PV_URL: &str = "https://log.mmstat.com/v.gif";

/// How far the gateway goes to look like the official client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlignMode {
    /// Only what the API needs (the default).
    Off,
    /// Also the official client's telemetry.
    Official,
}

fn align_mode(s: &str) -> Result<AlignMode, String> {
    AlignMode::from_str(s, true).map_err(|_| format!("{s:?} is not one of: off, official"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetrySettings {
    /// `off` (default) or `official`: also send the official client's telemetry.
    #[arg(long, env = "IFLOW_ALIGN_MODE", default_value = "off", value_parser = crate::config::parse_with("IFLOW_ALIGN_MODE", align_mode))]
    pub align_mode: AlignMode,
    /// Base URL of the `//aitrack.lifecycle.*` events.
    #[arg(long, env = "IFLOW_TELEMETRY_GM_URL", default_value = DEFAULT_GM_URL, value_parser = crate::config::parse_with("IFLOW_TELEMETRY_GM_URL", crate::config::http_url))]
    pub telemetry_gm_url: String,
    /// The page-view URL (`v.gif`).
    #[arg(long, env = "IFLOW_TELEMETRY_PV_URL", default_value = DEFAULT_PV_URL, value_parser = crate::config::parse_with("IFLOW_TELEMETRY_PV_URL", crate::config::http_url))]
    pub telemetry_pv_url: String,
    /// The `cliVer` reported in telemetry.
    #[arg(long, env = "IFLOW_CLI_VERSION", default_value = CLI_VERSION)]
    pub cli_version: String,
    /// The `nodeVersion` reported in telemetry.
    #[arg(long, env = "IFLOW_NODE_VERSION", default_value = NODE_VERSION)]
    pub node_version: String,
}
