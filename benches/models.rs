//! Model (de)serialisation on the runner's hot paths: every finish parses a worker result and
//! builds a run result; every `/status` and assignment serialises active runs.

// criterion_group! defines the bench functions without doc comments.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use janitor_runner::models::{
    ActiveRun, BackchannelInfo, JanitorResult, QueueItem, VcsInfo, WorkerResult,
};
use janitor_runner::time::parse_timestamp;
use serde_json::json;
use std::hint::black_box;

fn active_run() -> ActiveRun {
    let item = QueueItem {
        id: 1234,
        context: Some("ctx".into()),
        command: "DEB_BUILD_OPTIONS=nocheck lintian-brush --uncertain".into(),
        estimated_duration: Some(chrono::TimeDelta::seconds(600)),
        campaign: "lintian-fixes".into(),
        refresh: false,
        requester: Some("scheduler".into()),
        change_set: None,
        codebase: "alpha".into(),
    };
    ActiveRun::from_queue_item(
        &item,
        "5a4c6a3e-3b0b-4f7e-9b8e-111111111111".into(),
        parse_timestamp("2026-11-23T10:00:00").unwrap(),
        VcsInfo {
            branch_url: Some("https://salsa.debian.org/debian/alpha".into()),
            subpath: Some(String::new()),
            vcs_type: Some("git".into()),
        },
        BackchannelInfo::Polling {
            my_url: "http://worker-1:8080/".into(),
        },
        Some("worker-1".into()),
        None,
    )
}

fn worker_result() -> serde_json::Value {
    json!({
        "description": "Fixed 3 lintian tags", "codemod": {"applied": [{"tag": "a"}, {"tag": "b"}]},
        "main_branch_revision": "abc", "revision": "def", "value": 40,
        "branches": [["main", null, "abc", "def"], ["pristine-tar", "pristine-tar", null, "123"]],
        "tags": [["debian/1.0-1", "def"]], "remotes": {"origin": {"url": "https://x"}},
        "target": {"name": "debian", "details": {"lintian": {"version": "2.1"}}},
        "start_time": "2026-11-23T10:00:00Z", "finish_time": "2026-11-23T10:09:59.5Z",
        "queue_id": 1234, "worker_name": "worker-1", "refreshed": false,
        "target_branch_url": "https://salsa.debian.org/debian/alpha", "subpath": "",
        "vcs_type": "git", "codebase": "alpha"
    })
}

fn bench(c: &mut Criterion) {
    let run = active_run();
    let now = parse_timestamp("2026-11-23T10:05:00").unwrap();
    let stored = run.to_json(now);
    let text = worker_result().to_string();
    c.bench_function("active_run_to_json", |b| {
        b.iter(|| black_box(&run).to_json(now));
    });
    c.bench_function("active_run_from_json", |b| {
        b.iter(|| ActiveRun::from_json(black_box(&stored)).unwrap());
    });
    c.bench_function("finish_parse_and_result_json", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_str(black_box(&text)).unwrap();
            let worker = WorkerResult::from_json(&value).unwrap();
            JanitorResult::from_worker_result(&run, worker, vec!["build.log".into()], now).to_json()
        });
    });
    c.bench_function("committer_env", |b| {
        b.iter(|| {
            janitor_runner::committer_env(Some(black_box("Janitor Bot <janitor@example.org>")))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
