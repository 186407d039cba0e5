//! Atomic claims across processes: two runner processes on one database (and once on one
//! Redis), 64 concurrent assigners; every queue item is handed out exactly once. And a runner
//! stopped with SIGTERM mid-upload: the upload completes within the grace period, or the
//! process exits when the period ends and the worker's retry is accepted by the next one.
//!
//! The suite uses 2,000 items; `JR_CONCURRENCY_ITEMS=10000` runs the full size.

use crate::common;
use crate::common::process;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A finish upload as janitor-worker sends it: result.json and a log.
fn finish_request(address: &str, run_id: &str) -> (Vec<u8>, Vec<u8>) {
    let boundary = "shutdown-test-boundary";
    let mut body = Vec::new();
    for (name, content_type, data) in [
        (
            "result.json",
            "application/json",
            br#"{"code": "success", "description": "ok"}"#.to_vec(),
        ),
        ("worker.log", "text/plain", vec![b'x'; 64 * 1024]),
    ] {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend(data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /active-runs/{run_id}/finish HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    (head.into_bytes(), body)
}

async fn assign_one(runner: &process::Runner) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/active-runs", runner.url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// A runner with `--shutdown-grace <grace>`, a run assigned by it, and a connection that has
/// sent half of that run's finish upload; with the rest of the upload.
async fn half_uploaded(
    database_url: &str,
    config: &std::path::Path,
    grace: &str,
) -> (process::Runner, String, tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let runner = process::start_runner_with_args(
        database_url,
        config,
        None,
        &[],
        &["--shutdown-grace", grace],
    );
    let run_id = assign_one(&runner).await;
    let (head, body) = finish_request(&runner.address(), &run_id);
    let mut upload = tokio::net::TcpStream::connect(runner.address())
        .await
        .unwrap();
    upload.write_all(&head).await.unwrap();
    upload.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    (runner, run_id, upload, body[body.len() / 2..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_uploads_finish_within_the_grace_period() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let db = common::migrated_database().await;
    sqlx::raw_sql(
        "INSERT INTO codebase (name, url, branch_url, vcs_type) VALUES
             ('sig-a', 'http://127.0.0.1:1/a', 'http://127.0.0.1:1/a', 'git'),
             ('sig-b', 'http://127.0.0.1:1/b', 'http://127.0.0.1:1/b', 'git');
         INSERT INTO queue (codebase, suite, command) VALUES ('sig-a', 'generic', 'true'),
                                                             ('sig-b', 'generic', 'true');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let stored = |id: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM run WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // An upload that completes during the grace period is stored and answered.
    let (mut runner, run_id, mut upload, rest) = half_uploaded(&db.url, &config, "5").await;
    runner.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(runner.address())
            .await
            .is_err(),
        "new connections are refused once stopping"
    );
    upload.write_all(&rest).await.unwrap();
    let mut answer = Vec::new();
    upload.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = runner
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the upload");
    assert!(status.success(), "{status:?}");
    assert_eq!(stored(run_id).await, 1);

    // An upload that stalls past the grace period: the process exits 0 at its end, nothing
    // is stored, and the worker's retry to the next process is accepted.
    let (mut runner, run_id, upload, _) = half_uploaded(&db.url, &config, "2").await;
    let stopping = Instant::now();
    runner.terminate();
    let status = runner
        .wait_exit(Duration::from_secs(6))
        .expect("exits after the grace period");
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the grace period"
    );
    assert_eq!(stored(run_id.clone()).await, 0);
    drop(upload);
    let runner = process::start_runner(&db.url, &config, None, &[]);
    let (head, body) = finish_request(&runner.address(), &run_id);
    let mut retry = tokio::net::TcpStream::connect(runner.address())
        .await
        .unwrap();
    retry.write_all(&head).await.unwrap();
    retry.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    retry.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(stored(run_id).await, 1);
    drop(runner);
    db.drop_now().await;
}

/// Forwards `listener`'s connections to the PostgreSQL server of `database_url` (a Unix
/// socket or TCP), so a test decides when "the database" becomes reachable.
async fn forward_to_postgres(listener: tokio::net::TcpListener, database_url: String) {
    let options: sqlx::postgres::PgConnectOptions = database_url.parse().unwrap();
    let socket_dir = options.get_socket().cloned();
    let host = options.get_host().to_string();
    let port = options.get_port();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let (host, socket_dir) = (host.clone(), socket_dir.clone());
        tokio::spawn(async move {
            if let Some(dir) = socket_dir {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                if let Ok(mut server) = tokio::net::UnixStream::connect(path).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            } else if let Ok(mut server) = tokio::net::TcpStream::connect((host, port)).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// A runner started while its database is unreachable serves its probes at once, answers 503
/// with the reason elsewhere (assigning nothing), and migrates and serves by itself once the
/// database can be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_before_its_database_and_recovers_by_itself() {
    let db = common::empty_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let unreachable = format!("postgresql://postgres@127.0.0.1:{port}/{}", db.name);
    let runner = process::start_runner(&unreachable, &config, None, &[]);
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", runner.url)).send();
    assert_eq!(get("/health").await.unwrap().status(), 200);
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.json::<serde_json::Value>().await.unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("database"), "{reason}");
    let queue = get("/queue").await.unwrap();
    assert_eq!(queue.status(), 503);
    assert!(queue.json::<serde_json::Value>().await.unwrap()["reason"].is_string());
    let assign = client
        .post(format!("{}/active-runs", runner.url))
        .json(&serde_json::json!({"node": "n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(assign.status(), 503);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = tokio::spawn(forward_to_postgres(listener, db.url.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("/ready").await.unwrap().status() != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the database came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/queue").await.unwrap().status(), 200);
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('runner_active_run') IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        migrated,
        "the runner migrated the database once it could reach it"
    );
    drop(runner);
    forwarder.abort();
    db.drop_now().await;
}
