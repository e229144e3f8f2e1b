//! The actor runtime: the account registry, its store worker and one upstream
//! actor per account.

pub mod refresher;
pub mod registry;
pub mod scheduler;
pub mod store_worker;
pub mod upstream;
