//! The iFlow upstream, as the official `iflow-cli` 0.5.19 speaks it: signed
//! headers, session and conversation ids, per-model body rules, error codes.

pub mod body;
pub mod errors;
pub mod headers;
pub mod models;
pub mod signature;
