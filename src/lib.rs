//! iflow-actix: an OpenAI- and Anthropic-compatible gateway for iFlow accounts.
//!
//! Map of the crate:
//! - [`actors`]: the runtime (account registry, store worker, one upstream
//!   actor per account, pool scheduler, token refresher);
//! - [`http`]: routes, handlers, dispatch (admission, failover), the upstream
//!   client and the stream relay;
//! - [`profile`]: upstream profiles (the iFlow protocol: signing, headers,
//!   model rules, error codes; a plain OpenAI-compatible one);
//! - [`openai`] and [`anthropic`]: the client-facing API formats;
//! - [`oauth`]: iFlow login, token refresh calls, the official CLI's files;
//! - [`store`]: accounts, gateway keys and usage on disk;
//! - [`metrics`]: Prometheus counters and histograms;
//! - [`json`]: compact JSON output of rewritten bodies and replies;
//! - [`align`] and [`telemetry`]: official-client alignment checks and the
//!   opt-in telemetry;
//! - [`cli`] and [`config`]: the command line and settings;
//! - [`shutdown`]: the process-wide shutdown state.

pub mod actors;
pub mod align;
pub mod anthropic;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod json;
pub mod metrics;
pub mod oauth;
pub mod openai;
pub mod profile;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod telemetry;
