//! Atomic claims across processes: two runner processes on one database (and once on one
//! Redis), 64 concurrent assigners; every queue item is handed out exactly once.
//!
//! The suite uses 2,000 items; `JR_CONCURRENCY_ITEMS=10000` runs the full size.

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Barrier, Mutex};

async fn hand_out_everything(redis: bool) {
    let items: usize = std::env::var("JR_CONCURRENCY_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let db = common::migrated_database().await;
    sqlx::query(
        "INSERT INTO codebase (name, url, branch_url, vcs_type)
         SELECT 'cb' || i, 'http://127.0.0.1:1/cb' || i, 'http://127.0.0.1:1/cb' || i, 'git'
         FROM generate_series(1, $1) AS i",
    )
    .bind(items as i32)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO queue (codebase, suite, command, priority)
         SELECT 'cb' || i, 'generic', 'true', (i * 7919) % 1000 FROM generate_series(1, $1) AS i",
    )
    .bind(items as i32)
    .execute(&db.pool)
    .await
    .unwrap();
    // A live queue has statistics (autovacuum); a freshly seeded one must be analysed.
    sqlx::query("ANALYZE queue, codebase, runner_active_run")
        .execute(&db.pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let prefix = common::redis_prefix();
    let redis_url = redis.then(common::redis_url);
    let redis_args = redis_url.as_deref().map(|url| (url, prefix.as_str()));
    let runners = [
        process::start_runner(&db.url, &config, redis_args, &[]),
        process::start_runner(&db.url, &config, redis_args, &[]),
    ];
    let urls: Vec<String> = runners
        .iter()
        .map(|r| format!("{}/active-runs", r.url))
        .collect();

    let assigners = 64;
    let barrier = Arc::new(Barrier::new(assigners));
    let handed_out = Arc::new(Mutex::new(Vec::<i64>::with_capacity(items)));
    let mut tasks = Vec::new();
    for n in 0..assigners {
        let url = urls[n % 2].clone();
        let barrier = barrier.clone();
        let handed_out = handed_out.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            barrier.wait().await;
            loop {
                let response = client
                    .post(&url)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    201 => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        handed_out
                            .lock()
                            .await
                            .push(body["queue_id"].as_i64().unwrap());
                    }
                    503 => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        assert_eq!(body["reason"], "queue empty", "{body}");
                        break;
                    }
                    other => panic!(
                        "unexpected {other}: {}",
                        response.text().await.unwrap_or_default()
                    ),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let handed_out = handed_out.lock().await;
    let unique: HashSet<i64> = handed_out.iter().copied().collect();
    assert_eq!(
        unique.len(),
        handed_out.len(),
        "a queue item was handed out twice"
    );
    assert_eq!(handed_out.len(), items, "queue items were lost");
    let queue_ids: HashSet<i64> = sqlx::query_scalar("SELECT id::int8 FROM queue")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(unique, queue_ids);
    drop(runners);
    if redis {
        common::clear_prefix(&prefix).await;
    }
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_item_exactly_once_postgres_store() {
    hand_out_everything(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_item_exactly_once_redis_store() {
    hand_out_everything(true).await;
}
