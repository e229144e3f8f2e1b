//! iflow-actix: an OpenAI-compatible gateway for iFlow accounts.
//!
//! Map of the crate:
//! - [`actors`]: the runtime (account registry, store worker, one upstream actor per account);
//! - [`http`]: routes, handlers, the upstream client and the stream relay;
//! - [`profile`]: upstream profiles (the iFlow protocol: signing, headers, model rules);
//! - [`openai`]: the client-facing OpenAI format (validation, SSE, normalisation);
//! - [`store`]: the account files;
//! - [`cli`] and [`config`]: the command line and settings.

pub mod actors;
pub mod align;
pub mod anthropic;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod openai;
pub mod profile;
pub mod secret;
pub mod store;
pub mod telemetry;
