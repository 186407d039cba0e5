//! The integration tests, one binary: the harness in `common` (real PostgreSQL, Redis, loopback
//! servers, the local git forge, runner processes) is compiled and linked once. Each module is
//! one area of the runner; `cargo test --test it <module>::` runs one.

// Tests read top to bottom: an import or a row type next to the step that needs it, fixtures
// taken by value as they are written.
#![allow(clippy::items_after_statements, clippy::needless_pass_by_value)]

#[macro_use]
mod common;

mod assign;
mod backchannel;
mod chaos;
mod concurrency;
mod config_files;
mod finish;
mod http_api;
mod http_bad_input;
mod migrate;
mod model_fixtures;
mod object_storage;
mod observability;
mod registry;
mod run_triggers;
mod scheduling;
mod scheduling_corpus;
mod schema_compat;
mod state_store;
mod upstream;
mod warm_connections;
