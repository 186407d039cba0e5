//! JSON fixtures built from the specs: each model reads its input and writes the expected JSON.

use std::path::PathBuf;

use janitor_runner::models::{ActiveRun, JanitorResult, ResumeInfo, WorkerResult};
use janitor_runner::time::parse_timestamp;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn now(fx: &Value) -> chrono::NaiveDateTime {
    parse_timestamp(fx["now"].as_str().unwrap()).unwrap()
}

#[test]
fn active_runs_round_trip() {
    for name in [
        "active_run_polling.json",
        "active_run_jenkins.json",
        "active_run_legacy.json",
    ] {
        let fx = fixture(name);
        let run = ActiveRun::from_json(&fx["input"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = run.to_json(now(&fx));
        assert_eq!(written, fx["expected"], "{name}");
        // Written JSON reads back to the same run.
        assert_eq!(ActiveRun::from_json(&written).unwrap(), run, "{name}");
    }
}

#[test]
fn finish_results() {
    for name in [
        "finish_rust_worker_success.json",
        "finish_failure_debian_without_changes.json",
    ] {
        let fx = fixture(name);
        let run = ActiveRun::from_json(&fx["run"]).unwrap();
        let worker =
            WorkerResult::from_json(&fx["worker_result"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let logs: Vec<String> = serde_json::from_value(fx["logfilenames"].clone()).unwrap();
        let result = JanitorResult::from_worker_result(&run, worker, logs, now(&fx));
        assert_eq!(result.to_json(), fx["expected"], "{name}");
    }
}

#[test]
fn resume_info_round_trip() {
    let fx = fixture("resume_info.json");
    let info = ResumeInfo::from_json(&fx["input"]).unwrap();
    assert_eq!(info.to_json(), fx["expected"]);
}
