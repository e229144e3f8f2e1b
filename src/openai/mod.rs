//! The client-facing OpenAI chat format: request validation, SSE framing and
//! response normalisation. Independent of any upstream profile.

pub mod normalize;
pub mod request;
pub mod sse;
pub mod stream;

pub use request::ChatRequest;
