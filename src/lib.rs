//! janitor-runner: the runner of the Janitor platform, in Rust.
//!
//! The library holds everything; the `janitor-runner` binary and the `janitor_runner` Python
//! extension are two thin faces over it.

pub mod app;
pub mod assign;
pub mod backchannel;
pub mod candidate;
pub mod cli;
pub mod clock;
pub mod codebase;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod finish;
pub mod metrics;
pub mod models;
pub mod names;
pub mod own_runs;
pub mod queue;
pub mod registry;
pub mod review;
pub mod runs;
pub mod schedule;
pub mod state;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod web;
pub mod worker_auth;

#[cfg(feature = "python")]
mod python;

pub use assign::command::splitout_env;
pub use assign::committer::committer_env;
pub use error::{Error, Result};
pub use finish::logs::is_log_filename;

/// The crate version, also the Python package's `__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
