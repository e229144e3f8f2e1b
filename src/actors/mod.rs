//! The actor runtime: the account registry, its store worker, one upstream
//! actor per account (living on the HTTP workers' threads, see `homes`), the
//! pool scheduler and the token refresher.

pub mod homes;
pub mod refresher;
pub mod registry;
pub mod scheduler;
pub mod store_worker;
pub mod upstream;
