//! Backchannels and the watchdog against fake workers served on loopback: pings and
//! keep-alives, reaping dead runs, `/log` and `/kill`, an abort racing a finish, and two runner
//! processes sharing the reaping.

use crate::common;
use crate::common::process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{NaiveDateTime, TimeDelta};
use common::{Store, TestServer, sql};
use janitor_runner::backchannel::watchdog::Watchdog;
use janitor_runner::models::{ActiveRun, BackchannelInfo, QueueItem, VcsInfo};
use janitor_runner::registry;
use serde_json::{Value, json};

// -- fake workers -------------------------------------------------------------------------------

/// What a fake worker answers on `/log-id`.
#[derive(Debug, Clone)]
enum LogId {
    /// `"<id>"`, as `janitor-worker` answers.
    Json(String),
    /// The bare id, as the Python worker answered.
    Raw(String),
    /// `null`: the worker has no run.
    Idle,
    Status(u16),
    /// Never answers.
    Hang,
}

/// One fake worker, served under `/w/<name>` (no trailing slash in its URL).
#[derive(Debug, Clone)]
struct Worker {
    log_id: LogId,
    /// Waited before answering `/log-id`.
    delay: Duration,
    /// `None`: `/logs` answers 404 as `janitor-worker` does before it has a log directory.
    logs: Option<Vec<(String, Vec<u8>)>>,
    /// `janitor-worker` has no `/kill`: 404.
    kill_status: u16,
    /// `/api/json` of a Jenkins build: status and body.
    jenkins: (u16, Value),
    console: String,
}

impl Worker {
    fn answering(log_id: LogId) -> Self {
        Self {
            log_id,
            delay: Duration::ZERO,
            logs: None,
            kill_status: 404,
            jenkins: (404, Value::Null),
            console: String::new(),
        }
    }

    fn jenkins(status: u16, job: Value) -> Self {
        Self {
            jenkins: (status, job),
            console: "Started by timer\nFinished: SUCCESS\n".into(),
            ..Self::answering(LogId::Status(404))
        }
    }
}

#[derive(Default)]
struct Fleet {
    workers: Mutex<HashMap<String, Worker>>,
    pings: Mutex<HashMap<String, usize>>,
    kills: Mutex<HashMap<String, usize>>,
}

impl Fleet {
    fn worker(&self, name: &str) -> Option<Worker> {
        self.workers.lock().unwrap().get(name).cloned()
    }

    fn pings(&self, name: &str) -> usize {
        self.pings.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

struct FakeWorkers {
    base: String,
    fleet: Arc<Fleet>,
}

impl FakeWorkers {
    async fn start() -> Self {
        let fleet = Arc::new(Fleet::default());
        let app = axum::Router::new()
            .route("/w/{name}/log-id", get(log_id))
            .route("/w/{name}/logs", get(logs))
            .route("/w/{name}/logs/{file}", get(log_file))
            .route("/w/{name}/kill", post(kill))
            .route("/w/{name}/api/json", get(jenkins_job))
            .route("/w/{name}/logText/progressiveText", get(console))
            .with_state(fleet.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, fleet }
    }

    /// Adds a worker; its backchannel URL.
    fn add(&self, name: &str, worker: Worker) -> String {
        self.fleet
            .workers
            .lock()
            .unwrap()
            .insert(name.to_string(), worker);
        format!("{}/w/{name}", self.base)
    }

    fn polling(&self, name: &str, worker: Worker) -> BackchannelInfo {
        BackchannelInfo::Polling {
            my_url: self.add(name, worker),
        }
    }

    fn jenkins(&self, name: &str, worker: Worker) -> BackchannelInfo {
        BackchannelInfo::Jenkins {
            my_url: format!("{}/", self.add(name, worker)),
            metadata: Value::Null,
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

async fn log_id(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    *fleet.pings.lock().unwrap().entry(name.clone()).or_default() += 1;
    let Some(worker) = fleet.worker(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tokio::time::sleep(worker.delay).await;
    match worker.log_id {
        LogId::Json(id) => axum::Json(json!(id)).into_response(),
        LogId::Raw(id) => id.into_response(),
        LogId::Idle => axum::Json(Value::Null).into_response(),
        LogId::Status(code) => (status(code), "broken").into_response(),
        LogId::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// A worker whose `/log-id` hangs hangs on every route.
async fn hang_if_hanging(fleet: &Fleet, name: &str) {
    if let Some(Worker {
        log_id: LogId::Hang,
        ..
    }) = fleet.worker(name)
    {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

async fn logs(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    hang_if_hanging(&fleet, &name).await;
    match fleet.worker(&name).and_then(|w| w.logs) {
        Some(logs) => {
            axum::Json(logs.into_iter().map(|(n, _)| n).collect::<Vec<_>>()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "Log directory not created yet").into_response(),
    }
}

async fn log_file(
    State(fleet): State<Arc<Fleet>>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    hang_if_hanging(&fleet, &name).await;
    if file == "broken.log" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "disk on fire").into_response();
    }
    let found = fleet
        .worker(&name)
        .and_then(|w| w.logs)
        .and_then(|logs| logs.into_iter().find(|(n, _)| *n == file));
    match found {
        Some((_, body)) => body.into_response(),
        None => (StatusCode::NOT_FOUND, "Log file not found").into_response(),
    }
}

async fn kill(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    *fleet.kills.lock().unwrap().entry(name.clone()).or_default() += 1;
    let code = fleet.worker(&name).map_or(404, |w| w.kill_status);
    (status(code), axum::Json(json!({}))).into_response()
}

async fn jenkins_job(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    *fleet.pings.lock().unwrap().entry(name.clone()).or_default() += 1;
    match fleet.worker(&name) {
        Some(Worker {
            jenkins: (200, job),
            ..
        }) => axum::Json(job).into_response(),
        Some(Worker {
            jenkins: (code, _), ..
        }) => (status(code), "jenkins says no").into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn console(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    match fleet.worker(&name) {
        Some(worker) => worker.console.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A backchannel nobody listens on.
async fn closed_port() -> BackchannelInfo {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    BackchannelInfo::Polling {
        my_url: format!("http://127.0.0.1:{port}/"),
    }
}

// -- runs -------------------------------------------------------------------------------------

const SEED: &str = "
INSERT INTO named_publish_policy (name, per_branch_policy) VALUES
  ('propose-main', ARRAY[ROW('main', 'propose', NULL)::branch_publish_policy]);
";

/// A codebase with a candidate in campaign `generic` and a queue item for it; the item.
async fn queue_item(pool: &sqlx::PgPool, codebase: &str) -> QueueItem {
    sqlx::query(
        "INSERT INTO codebase (name, branch_url, url, vcs_type, value)
         VALUES ($1, 'https://forge.example.org/' || $1, 'https://forge.example.org/' || $1,
                 'git', 10)",
    )
    .bind(codebase)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO candidate (codebase, suite, command, value, publish_policy)
         VALUES ($1, 'generic', 'true', 5, 'propose-main')",
    )
    .bind(codebase)
    .execute(pool)
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO queue (codebase, suite, command) VALUES ($1, 'generic', 'true')
         RETURNING id::bigint",
    )
    .bind(codebase)
    .fetch_one(pool)
    .await
    .unwrap();
    QueueItem {
        id,
        context: None,
        command: "true".into(),
        estimated_duration: None,
        campaign: "generic".into(),
        refresh: false,
        requester: None,
        change_set: None,
        codebase: codebase.into(),
    }
}

fn active_run(item: &QueueItem, backchannel: BackchannelInfo, start: NaiveDateTime) -> ActiveRun {
    ActiveRun::from_queue_item(
        item,
        format!("run-{}", item.codebase),
        start,
        VcsInfo {
            branch_url: Some(format!("https://forge.example.org/{}", item.codebase)),
            subpath: Some(String::new()),
            vcs_type: Some("git".into()),
        },
        backchannel,
        // Not in the `worker` table, as internal-app workers usually are not.
        Some("w1".into()),
        Some("http://w1.example.org/".into()),
    )
}

/// Queues and registers a run of `codebase` started now.
async fn start_run(server: &TestServer, codebase: &str, backchannel: BackchannelInfo) -> ActiveRun {
    let item = queue_item(&server.db.pool, codebase).await;
    let now = server.clock_now();
    let run = active_run(&item, backchannel, now);
    registry::register_run(&server.state, &run, now)
        .await
        .unwrap();
    run
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct RunRow {
    result_code: String,
    description: Option<String>,
    failure_transient: Option<bool>,
}

async fn run_rows(pool: &sqlx::PgPool, id: &str) -> Vec<RunRow> {
    sqlx::query_as("SELECT result_code, description, failure_transient FROM run WHERE id = $1")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn row(code: &str, description: &str) -> Vec<RunRow> {
    vec![RunRow {
        result_code: code.into(),
        description: Some(description.into()),
        failure_transient: Some(true),
    }]
}

/// Waits for the background reschedule to queue `codebase` again; its new queue id.
async fn requeued(pool: &sqlx::PgPool, codebase: &str, old: i64) -> i64 {
    for _ in 0..100 {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id::bigint FROM queue WHERE codebase = $1")
            .bind(codebase)
            .fetch_all(pool)
            .await
            .unwrap();
        if let [id] = ids[..]
            && id != old
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{codebase} was not queued again");
}

/// The worker's finish upload of a `success` result without logs: status and JSON answer.
async fn finish_success(url: &str) -> (reqwest::StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header(
            "content-type",
            "multipart/form-data; boundary=race-boundary",
        )
        .body(concat!(
            "--race-boundary\r\n",
            "Content-Disposition: form-data; name=\"metadata\"; filename=\"result.json\"\r\n",
            "Content-Type: application/json\r\n\r\n",
            "{\"code\": \"success\"}\r\n",
            "--race-boundary--\r\n",
        ))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json::<Value>().await.unwrap())
}

/// One outcome for a run whose worker's finish raced an abort: a 201 and a `success` row, or
/// a 409 naming the run and the abort's row.
async fn assert_one_outcome(
    pool: &sqlx::PgPool,
    id: &str,
    finish: &(reqwest::StatusCode, Value),
    aborted_code: &str,
) -> bool {
    let rows = run_rows(pool, id).await;
    assert_eq!(rows.len(), 1, "{id} has exactly one run row");
    match finish.0.as_u16() {
        201 => {
            assert_eq!(rows[0].result_code, "success", "{id}");
            true
        }
        409 => {
            assert_eq!(finish.1, json!({"id": id, "reason": id}));
            assert_eq!(rows[0].result_code, aborted_code, "{id}");
            false
        }
        other => panic!("finish of {id} answered {other}: {}", finish.1),
    }
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

// -- the watchdog -----------------------------------------------------------------------------

async fn watchdog_keeps_live_runs_and_reaps_dead_ones(store: Store) {
    let server = TestServer::start_with(store, |s| {
        s.backchannel_timeout = Duration::from_secs(1);
    })
    .await;
    sql(&server, SEED).await;
    let fake = FakeWorkers::start().await;
    let start = server.clock_now();
    let mut runs = HashMap::new();
    for (codebase, backchannel) in [
        (
            "quoted",
            fake.polling(
                "quoted",
                Worker::answering(LogId::Json("run-quoted".into())),
            ),
        ),
        (
            "raw",
            fake.polling("raw", Worker::answering(LogId::Raw("run-raw".into()))),
        ),
        (
            "other",
            fake.polling("other", Worker::answering(LogId::Json("run-zzz".into()))),
        ),
        // janitor-worker answers null between taking its assignment and starting on it.
        ("idle", fake.polling("idle", Worker::answering(LogId::Idle))),
        (
            "erroring",
            fake.polling("erroring", Worker::answering(LogId::Status(500))),
        ),
        (
            "hanging",
            fake.polling("hanging", Worker::answering(LogId::Hang)),
        ),
        ("closed", closed_port().await),
        // A worker that answers far more than a run id: not read whole, a failed ping.
        (
            "chatty",
            fake.polling("chatty", Worker::answering(LogId::Raw("x".repeat(100_000)))),
        ),
        ("silent", BackchannelInfo::None),
        (
            "building",
            fake.jenkins(
                "building",
                Worker::jenkins(200, json!({"id": "12", "result": null})),
            ),
        ),
        (
            "failed",
            fake.jenkins(
                "failed",
                Worker::jenkins(200, json!({"id": "13", "result": "FAILURE"})),
            ),
        ),
        (
            "vanished",
            fake.jenkins("vanished", Worker::jenkins(404, Value::Null)),
        ),
        (
            "ended",
            fake.jenkins(
                "ended",
                Worker::jenkins(200, json!({"id": "14", "result": "SUCCESS"})),
            ),
        ),
    ] {
        runs.insert(codebase, start_run(&server, codebase, backchannel).await);
    }
    let watchdog = Watchdog::new(server.state.clone());

    // Younger than run_timeout / 3 (20 minutes): nobody is asked anything.
    server.clock.advance(TimeDelta::minutes(19));
    let report = watchdog.run_pass().await.unwrap();
    assert_eq!(report.due, 0, "{store:?}: {report:?}");
    assert_eq!(fake.fleet.pings("quoted"), 0);

    // 21 minutes: every run with a backchannel is pinged.
    server.clock.advance(TimeDelta::minutes(2));
    let pinged_at = server.clock_now();
    let report = watchdog.run_pass().await.unwrap();
    let mut aborted = report.aborted.clone();
    aborted.sort();
    assert_eq!(
        aborted,
        [
            ("run-failed", "run-disappeared"),
            ("run-other", "run-disappeared"),
            ("run-vanished", "run-disappeared"),
        ]
        .map(|(id, code)| (id.to_string(), code.to_string())),
        "{store:?}: {report:?}"
    );
    assert_eq!(
        report.alive, 3,
        "{store:?}: quoted, raw, building: {report:?}"
    );
    assert_eq!(
        report.unreachable, 5,
        "{store:?}: erroring, hanging, closed, chatty, idle: {report:?}"
    );
    assert_eq!(
        report.due, 12,
        "{store:?}: all but the silent run: {report:?}"
    );
    assert_eq!(report.errors, 0, "{store:?}: {report:?}");
    let pool = &server.db.pool;
    assert_eq!(
        run_rows(pool, "run-other").await,
        row(
            "run-disappeared",
            "Worker started processing new run run-zzz rather than run-other"
        )
    );
    // A worker that says it has no run may not have started on it yet: not a verdict.
    assert!(run_rows(pool, "run-idle").await.is_empty(), "{store:?}");
    assert_eq!(
        run_rows(pool, "run-failed").await,
        row(
            "run-disappeared",
            "Jenkins lists job 13 for run run-failed as failed"
        )
    );
    let vanished_url = format!("{}/w/vanished/", fake.base);
    assert_eq!(
        run_rows(pool, "run-vanished").await,
        row(
            "run-disappeared",
            &format!("Jenkins job {vanished_url} has disappeared")
        )
    );
    for live in ["quoted", "raw", "building"] {
        assert_eq!(
            server
                .state
                .store
                .last_keepalive(&format!("run-{live}"))
                .await
                .unwrap(),
            Some(pinged_at),
            "{store:?}: the keep-alive of {live} advanced"
        );
    }
    assert_eq!(
        server
            .state
            .store
            .last_keepalive("run-closed")
            .await
            .unwrap(),
        Some(start),
        "{store:?}: a failed ping is no keep-alive"
    );
    let metrics = server.state.metrics.render();
    assert_eq!(
        metric(&metrics, "active_runs_ping_failed "),
        5.0,
        "{metrics}"
    );

    // The aborted runs' items are released and queued again by the reschedule.
    let other = &runs["other"];
    let new_id = requeued(pool, "other", other.queue_id).await;
    let claimed = server.state.store.assigned_queue_ids().await.unwrap();
    assert!(
        !claimed.contains(&other.queue_id) && !claimed.contains(&new_id),
        "{store:?}"
    );
    assert!(
        registry::get_run(&server.state, "run-other")
            .await
            .unwrap()
            .is_none()
    );
    let (next, _) =
        registry::next_queue_item(&server.state, Some("other"), None, server.clock_now())
            .await
            .unwrap()
            .expect("the requeued item is assignable");
    assert_eq!(next.id, new_id, "{store:?}");

    // 61 minutes: the runs that could not be pinged are timed out; the live ones, pinged
    // 40 minutes ago, are pinged again and stay.
    server.clock.advance(TimeDelta::minutes(40));
    let report = watchdog.run_pass().await.unwrap();
    let mut aborted = report.aborted.clone();
    aborted.sort();
    assert_eq!(
        aborted,
        [
            "run-chatty",
            "run-closed",
            "run-ended",
            "run-erroring",
            "run-hanging",
            "run-idle",
            "run-silent"
        ]
        .map(|id| (id.to_string(), "worker-timeout".to_string())),
        "{store:?}: {report:?}"
    );
    assert_eq!(report.alive, 3, "{store:?}: {report:?}");
    for timed_out in ["chatty", "closed", "erroring", "hanging", "idle", "silent"] {
        assert_eq!(
            run_rows(pool, &format!("run-{timed_out}")).await,
            row("worker-timeout", "No keepalives received in 1:01:00."),
            "{store:?}: {timed_out}"
        );
    }
    assert_eq!(
        run_rows(pool, "run-ended").await,
        row(
            "worker-timeout",
            "Jenkins build ended (SUCCESS) without a result in 1:01:00."
        ),
    );
    for live in ["quoted", "raw", "building"] {
        assert!(run_rows(pool, &format!("run-{live}")).await.is_empty());
        assert!(
            registry::get_run(&server.state, &format!("run-{live}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    // Every abort stored one run, and counted like any finished run.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(count, 10, "{store:?}");
    let metrics = server.state.metrics.render();
    assert_eq!(
        metric(
            &metrics,
            "result_total{campaign=\"generic\",result_code=\"worker-timeout\"} "
        ),
        7.0
    );
    assert_eq!(
        metric(
            &metrics,
            "watchdog_aborts_total{result_code=\"run-disappeared\"} "
        ),
        3.0
    );
    assert_eq!(
        metric(&metrics, "active_runs_ping_failed "),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "active_runs{worker=\"w1\"} "),
        3.0,
        "{metrics}"
    );
    // The aborted run rows name no worker: `w1` is not a registered worker.
    let worker: Option<String> =
        sqlx::query_scalar("SELECT worker FROM run WHERE id = 'run-silent'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(worker, None);
    server.stop().await;
}

per_store!(watchdog_keeps_live_runs_and_reaps_dead_ones, postgres => Store::Postgres, redis => Store::Redis);

#[tokio::test]
async fn a_day_without_news_from_a_run_without_backchannel_is_run_disappeared() {
    let server = TestServer::start_with(Store::Postgres, |s| {
        s.run_timeout_minutes = 3 * 24 * 60;
    })
    .await;
    sql(&server, SEED).await;
    start_run(&server, "silent", BackchannelInfo::None).await;
    let watchdog = Watchdog::new(server.state.clone());
    server.clock.advance(TimeDelta::hours(25));
    let report = watchdog.run_pass().await.unwrap();
    assert_eq!(
        report.aborted,
        [("run-silent".to_string(), "run-disappeared".to_string())]
    );
    assert_eq!(
        run_rows(&server.db.pool, "run-silent").await,
        row(
            "run-disappeared",
            "no support for ping, and haven't heard back in > 1 day"
        )
    );
    server.stop().await;
}

async fn an_abort_racing_the_workers_finish_leaves_one_outcome(store: Store) {
    let server = TestServer::start(store).await;
    sql(&server, SEED).await;
    let fake = FakeWorkers::start().await;
    let names: Vec<String> = (0..12).map(|i| format!("race{i}")).collect();
    let mut queue_ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        // A worker that has moved on: its ping makes the watchdog abort the run, after a
        // delay that spreads the aborts over the finishes.
        let mut worker = Worker::answering(LogId::Json("another-run".into()));
        worker.delay = Duration::from_millis(3 * i as u64);
        queue_ids.push(
            start_run(&server, name, fake.polling(name, worker))
                .await
                .queue_id,
        );
    }
    server.clock.advance(TimeDelta::minutes(30));
    let watchdog = Watchdog::new(server.state.clone());
    let finishes = futures::future::join_all(names.iter().enumerate().map(|(i, name)| {
        let url = server.url(&format!("/active-runs/run-{name}/finish"));
        async move {
            tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
            finish_success(&url).await
        }
    }));
    let (finishes, report) = tokio::join!(finishes, watchdog.run_pass());
    let report = report.unwrap();
    let mut finished = 0;
    for (name, finish) in names.iter().zip(&finishes) {
        let id = format!("run-{name}");
        if assert_one_outcome(&server.db.pool, &id, finish, "run-disappeared").await {
            finished += 1;
        }
        assert!(
            registry::get_run(&server.state, &id)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(
        finished + report.aborted.len(),
        names.len(),
        "{store:?}: every run ended once: {report:?}"
    );
    assert_eq!(report.errors, 0, "{store:?}: {report:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM queue WHERE id = ANY($1)")
        .bind(&queue_ids)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "{store:?}: every original queue item is gone");
    assert!(
        server.state.store.list_runs().await.unwrap().is_empty(),
        "{store:?}"
    );
    server.stop().await;
}

per_store!(an_abort_racing_the_workers_finish_leaves_one_outcome, postgres => Store::Postgres, redis => Store::Redis);

// -- /log and /kill ---------------------------------------------------------------------------

async fn call(method: reqwest::Method, url: String) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn json_call(method: reqwest::Method, url: String) -> (StatusCode, Value) {
    let (status, content_type, body) = call(method, url).await;
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "{status}: {content_type:?}"
    );
    (status, serde_json::from_slice(&body).unwrap())
}

fn reason(body: &Value) -> &str {
    body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {body}"))
}

async fn log_and_kill_routes_answer_for_every_kind_of_worker(store: Store) {
    use reqwest::Method;
    let server = TestServer::start_with(store, |s| {
        s.backchannel_timeout = Duration::from_secs(1);
    })
    .await;
    sql(&server, SEED).await;
    let fake = FakeWorkers::start().await;
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut listing = Worker::answering(LogId::Json("run-listing".into()));
    listing.logs = Some(vec![
        ("worker.log".into(), b"hello from the worker\n".to_vec()),
        ("build log.txt".into(), big.clone()),
    ]);
    listing.kill_status = 200;
    let listing = start_run(&server, "listing", fake.polling("listing", listing)).await;
    // janitor-worker: no log directory yet (404) and no /kill route (404).
    let real = start_run(
        &server,
        "real",
        fake.polling("real", Worker::answering(LogId::Json("run-real".into()))),
    )
    .await;
    let gone = start_run(&server, "gone", closed_port().await).await;
    let hanging = start_run(
        &server,
        "hanging",
        fake.polling("hanging", Worker::answering(LogId::Hang)),
    )
    .await;
    let silent = start_run(&server, "silent", BackchannelInfo::None).await;
    // A listing of over 4 MiB is not read whole.
    let mut huge = Worker::answering(LogId::Json("run-huge".into()));
    huge.logs = Some(
        (0..100_000)
            .map(|i| (format!("{i:0>48}.log"), Vec::new()))
            .collect(),
    );
    let huge = start_run(&server, "huge", fake.polling("huge", huge)).await;
    let jenkins = start_run(
        &server,
        "jenkins",
        fake.jenkins("jenkins", Worker::jenkins(200, json!({"result": null}))),
    )
    .await;
    let url = |path: String| server.url(&path);

    // GET /log/{run_id}
    assert_eq!(
        json_call(Method::GET, url(format!("/log/{}", listing.log_id))).await,
        (StatusCode::OK, json!(["worker.log", "build log.txt"]))
    );
    assert_eq!(
        json_call(
            Method::GET,
            url(format!("/log/{}?queue_id=1&worker_name=x", jenkins.log_id))
        )
        .await,
        (StatusCode::OK, json!(["worker.log"]))
    );
    let (status, body) = json_call(Method::GET, url(format!("/log/{}", real.log_id))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{store:?}: {body}");
    assert!(reason(&body).contains("404"), "{body}");
    assert!(
        reason(&body).contains("Log directory not created yet"),
        "{body}"
    );
    let (status, body) = json_call(Method::GET, url(format!("/log/{}", gone.log_id))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        reason(&body).starts_with("cannot reach worker at http://127.0.0.1:"),
        "{body}"
    );
    let (status, body) = json_call(Method::GET, url(format!("/log/{}", huge.log_id))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(reason(&body).contains("larger than"), "{body}");
    let (status, body) = json_call(Method::GET, url(format!("/log/{}", silent.log_id))).await;
    assert_eq!(
        (status, reason(&body)),
        (
            StatusCode::NOT_IMPLEMENTED,
            "listing logs not supported for this type of run"
        )
    );
    let (status, body) = json_call(Method::GET, url("/log/nonesuch".into())).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "No such current run: nonesuch")
    );

    // GET /log/{run_id}/{filename}
    let (status, content_type, body) = call(
        Method::GET,
        url(format!("/log/{}/worker.log", listing.log_id)),
    )
    .await;
    assert_eq!(
        (status, content_type.as_deref(), body.as_slice()),
        (
            StatusCode::OK,
            Some("text/plain"),
            b"hello from the worker\n".as_slice()
        )
    );
    let (status, _, body) = call(
        Method::GET,
        url(format!("/log/{}/build%20log.txt", listing.log_id)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == big, "{store:?}: the 3 MiB log arrives whole");
    let (status, content_type, body) = call(
        Method::GET,
        url(format!("/log/{}/worker.log", jenkins.log_id)),
    )
    .await;
    assert_eq!(
        (status, content_type.as_deref(), body.as_slice()),
        (
            StatusCode::OK,
            Some("text/plain"),
            b"Started by timer\nFinished: SUCCESS\n".as_slice()
        )
    );
    for (run, file, expected, prefix) in [
        (
            &listing,
            "nope.log",
            StatusCode::NOT_FOUND,
            "No such log file: nope.log",
        ),
        (
            &jenkins,
            "build.log",
            StatusCode::NOT_FOUND,
            "No such log file: build.log",
        ),
        (
            &listing,
            "broken.log",
            StatusCode::BAD_GATEWAY,
            "worker answered 500",
        ),
        (
            &gone,
            "worker.log",
            StatusCode::BAD_GATEWAY,
            "cannot reach worker",
        ),
        (
            &hanging,
            "worker.log",
            StatusCode::BAD_GATEWAY,
            "cannot reach worker",
        ),
        (
            &silent,
            "worker.log",
            StatusCode::NOT_IMPLEMENTED,
            "fetching logs not supported",
        ),
        (
            &listing,
            "a%2Fb",
            StatusCode::BAD_REQUEST,
            "Invalid filename",
        ),
        (
            &listing,
            "a%5Cb",
            StatusCode::BAD_REQUEST,
            "Invalid filename",
        ),
    ] {
        let (status, body) =
            json_call(Method::GET, url(format!("/log/{}/{file}", run.log_id))).await;
        assert_eq!(
            status, expected,
            "{store:?}: {file} of {}: {body}",
            run.log_id
        );
        assert!(reason(&body).starts_with(prefix), "{store:?}: {body}");
    }
    let (status, body) = json_call(Method::GET, url("/log/nonesuch/worker.log".into())).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "No such current run: nonesuch")
    );
    // The name is checked before the run is looked up, as in Python.
    let (status, _) = json_call(Method::GET, url("/log/nonesuch/a%2Fb".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // POST /kill/{run_id}
    let before = registry::get_run(&server.state, &listing.log_id)
        .await
        .unwrap()
        .unwrap();
    let (status, body) = json_call(Method::POST, url(format!("/kill/{}", listing.log_id))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut expected = before.to_json(server.clock_now());
    expected["current_duration"] = body["current_duration"].clone();
    assert_eq!(body, expected);
    assert_eq!(fake.fleet.kills.lock().unwrap().get("listing"), Some(&1));
    assert!(
        registry::get_run(&server.state, &listing.log_id)
            .await
            .unwrap()
            .is_some(),
        "{store:?}: the run stays active until its worker uploads"
    );
    let (status, body) = json_call(Method::POST, url(format!("/kill/{}", real.log_id))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        reason(&body).starts_with("worker answered 404 Not Found to POST"),
        "{body}"
    );
    let (status, body) = json_call(Method::POST, url(format!("/kill/{}", gone.log_id))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    for run in [&silent, &jenkins] {
        let (status, body) = json_call(Method::POST, url(format!("/kill/{}", run.log_id))).await;
        assert_eq!(
            (status, reason(&body)),
            (
                StatusCode::NOT_IMPLEMENTED,
                "kill not supported for this type of run"
            )
        );
    }
    let (status, body) = json_call(Method::POST, url("/kill/nonesuch".into())).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "No such current run: nonesuch")
    );
    let metrics = server.state.metrics.render();
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
    assert!(
        metrics.contains("route=\"kill\",status=\"501\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"log\",status=\"200\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"log-index\",status=\"502\""),
        "{metrics}"
    );
    server.stop().await;
}

per_store!(log_and_kill_routes_answer_for_every_kind_of_worker, postgres => Store::Postgres, redis => Store::Redis);

// -- several runner processes -----------------------------------------------------------------

async fn metric_of(runner: &process::Runner, line_start: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", runner.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, line_start)
}

/// Two `janitor-runner` processes, each with its watchdog every second, on one database (and
/// once on one Redis), and 50 runs dead for two hours: half without backchannel, half whose
/// worker moved on and answers slowly. Each run is pinged at most once and aborted exactly
/// once, by one of the two. Ten more such runs are finished by their workers, through either
/// process, while the watchdogs abort them: each keeps exactly one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runner_processes_reap_each_dead_run_once() {
    use janitor_runner::state::{ActiveRunStore, PostgresStore, RedisKeys, RedisStore};
    for redis in [false, true] {
        let db = common::migrated_database().await;
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = process::generic_config(dir.path());
        let prefix = common::redis_prefix();
        let redis_url = common::redis_url();
        let redis_args = redis.then_some((redis_url.as_str(), prefix.as_str()));
        let runners = [0, 1].map(|_| {
            process::start_runner_with_args(
                &db.url,
                &config,
                redis_args,
                &[("RUST_LOG", "error")],
                &["--watchdog-interval", "1"],
            )
        });
        let store: Arc<dyn ActiveRunStore> = if redis {
            let conn = janitor_runner::app::connect_redis(&redis_url)
                .await
                .unwrap();
            Arc::new(RedisStore::new(conn, RedisKeys::with_prefix(&prefix)))
        } else {
            Arc::new(PostgresStore::new(db.pool.clone()))
        };

        let fake = FakeWorkers::start().await;
        let dead_since = chrono::Utc::now().naive_utc() - TimeDelta::hours(2);
        let mut ids = Vec::new();
        for i in 0..50 {
            let codebase = format!("dead{i}");
            let item = queue_item(&db.pool, &codebase).await;
            let backchannel = if i % 2 == 0 {
                BackchannelInfo::None
            } else {
                let mut worker = Worker::answering(LogId::Json("a-later-run".into()));
                // Longer than the watchdog interval: the two processes' passes overlap.
                worker.delay = Duration::from_millis(1500);
                fake.polling(&codebase, worker)
            };
            let run = active_run(&item, backchannel, dead_since);
            store
                .register_run(&run.log_id, item.id, &run.to_json(dead_since), dead_since)
                .await
                .unwrap();
            ids.push(run.log_id);
        }

        let mut racers = Vec::new();
        for i in 0..10 {
            let codebase = format!("racer{i}");
            let item = queue_item(&db.pool, &codebase).await;
            let mut worker = Worker::answering(LogId::Json("a-later-run".into()));
            worker.delay = Duration::from_millis(1500);
            let run = active_run(&item, fake.polling(&codebase, worker), dead_since);
            store
                .register_run(&run.log_id, item.id, &run.to_json(dead_since), dead_since)
                .await
                .unwrap();
            racers.push(run.log_id);
        }
        // The uploads land over five seconds: before the pings, while they are out, while the
        // aborts are stored, and after.
        let finishes = futures::future::join_all(racers.iter().enumerate().map(|(i, id)| {
            let url = format!("{}/active-runs/{id}/finish", runners[i % 2].url);
            async move {
                tokio::time::sleep(Duration::from_millis(500 + 500 * i as u64)).await;
                finish_success(&url).await
            }
        }))
        .await;

        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !store.list_runs().await.unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis={redis}: runs left"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (i, id) in ids.iter().enumerate() {
            let rows = run_rows(&db.pool, id).await;
            let code = if i % 2 == 0 {
                "worker-timeout"
            } else {
                "run-disappeared"
            };
            assert_eq!(rows.len(), 1, "redis={redis}: {id}");
            assert_eq!(rows[0].result_code, code, "redis={redis}: {id}");
            if i % 2 == 1 {
                assert_eq!(
                    fake.fleet.pings(&format!("dead{i}")),
                    1,
                    "redis={redis}: {id}"
                );
            }
        }
        let mut finished = 0;
        for (i, (id, finish)) in racers.iter().zip(&finishes).enumerate() {
            if assert_one_outcome(&db.pool, id, finish, "run-disappeared").await {
                finished += 1;
            }
            assert!(
                fake.fleet.pings(&format!("racer{i}")) <= 1,
                "redis={redis}: {id}"
            );
        }
        let mut aborts = 0.0;
        let mut conflicts = 0.0;
        let mut each = Vec::new();
        for runner in &runners {
            let mine = metric_of(
                runner,
                "watchdog_aborts_total{result_code=\"worker-timeout\"} ",
            )
            .await
                + metric_of(
                    runner,
                    "watchdog_aborts_total{result_code=\"run-disappeared\"} ",
                )
                .await;
            each.push(mine);
            aborts += mine;
            conflicts += metric_of(runner, "watchdog_abort_conflicts_total ").await;
        }
        assert_eq!(
            aborts,
            f64::from(60 - finished),
            "redis={redis}: aborts per process {each:?}, {finished} racers finished first"
        );
        // A conflict is an abort that lost to a finish, never to the other process.
        assert!(
            conflicts <= f64::from(finished),
            "redis={redis}: {conflicts}"
        );
        drop(runners);
        if redis {
            common::clear_prefix(&prefix).await;
        }
        db.drop_now().await;
    }
}
