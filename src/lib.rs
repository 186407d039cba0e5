//! janitor-runner: the runner of the Janitor platform, in Rust.
//!
//! The library holds everything; the `janitor-runner` binary and the `janitor_runner` Python
//! extension are two thin faces over it.

pub mod app;
pub mod assign;
pub mod backchannel;
pub mod branch_url;
pub mod builder;
pub mod candidate;
pub mod cli;
pub mod clock;
pub mod codebase;
pub mod command;
pub mod committer;
pub mod config;
pub mod db;
pub mod debian_changes;
pub mod error;
pub mod events;
pub mod finish;
pub mod logs;
pub mod metrics;
pub mod models;
pub mod names;
pub mod processor;
pub mod queue;
pub mod queue_positions;
pub mod review;
pub mod runs;
pub mod schedule;
pub mod state;
pub mod status;
pub mod storage;
pub mod time;
pub mod upstream;
pub mod vcs_store;
pub mod watchdog;
pub mod web;
pub mod worker_auth;

#[cfg(feature = "python")]
mod python;

pub use command::splitout_env;
pub use committer::committer_env;
pub use error::{Error, Result};
pub use logs::is_log_filename;

/// The crate version, also the Python package's `__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
