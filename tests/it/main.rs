//! The integration tests, one binary: the harness in `common` (real PostgreSQL, Redis, loopback
//! servers, the local git forge, runner processes) is compiled and linked once. Each module is
//! one area of the runner; `cargo test --test it <module>::` runs one.

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
mod registry;
mod scheduling;
mod scheduling_corpus;
mod schema_compat;
mod state_store;
mod upstream;
