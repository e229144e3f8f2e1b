//! Official-client alignment: baseline fixtures of what the official
//! `iflow-cli` 0.5.19 sends for a set of inputs (chat calls and the
//! telemetry around them), a replay that runs each input through the real
//! gateway against a capturing server, and a field-level comparison. Used
//! by `iflow-actix align diff` and the replay test. See `docs/alignment.md`.

pub mod body;
pub mod capture;
pub mod compare;
pub mod dynamic;
pub mod fixture;
pub mod replay;
pub mod telemetry;

pub use compare::{Difference, compare};
pub use fixture::{FieldRule, Fixture, HeaderRule, TelemetryFixture};
