//! Finishing runs over HTTP, as `janitor-worker` does it, and upload attacks.

use crate::common;

use std::io::Read;

use common::{Store, TestServer, sql};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(sqlx::FromRow)]
struct StoredRun {
    result_code: String,
    start_time: String,
    finish_time: String,
    change_set: String,
    worker_link: Option<String>,
    instigated_context: String,
    logfilenames: Vec<String>,
    result_tags: Option<String>,
}

const BOUNDARY: &str = "janitor-test-boundary-7d1f";

/// One multipart part: field name, filename, content type, body.
type Part<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>);

/// A multipart/form-data body laid out as the worker's reqwest client writes it.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, filename, content_type, data) in parts {
        body.extend(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(name) => body.extend(
                format!(
                    "Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                )
                .as_bytes(),
            ),
            None => body
                .extend(format!("Content-Disposition: form-data; name=\"{field}\"\r\n").as_bytes()),
        }
        body.extend(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend(data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_finish(url: &str, body: Vec<u8>) -> (StatusCode, Value, Option<String>) {
    let response = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json, location)
}

async fn assign(server: &TestServer, campaign: &str) -> Value {
    let response = reqwest::Client::new()
        .post(server.url("/active-runs"))
        .json(
            &json!({"node": "n1", "archs": ["amd64"], "worker_link": "http://10.0.0.5:8080/",
                      "codebase": null, "campaign": campaign,
                      "backchannel": {"kind": "http", "url": "http://10.0.0.5:8080/"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn seed(server: &TestServer) {
    sql(
        server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
             ('alpha', 'https://git.example.org/alpha', 'https://git.example.org/alpha', 'git', '');
         INSERT INTO queue (codebase, suite, command, context) VALUES
             ('alpha', 'generic', 'true', 'ctx'), ('alpha', 'lintian-fixes', 'lintian-brush', NULL);",
    )
    .await;
}

/// The worker's Metadata on success: no `code`, `Z` times with nanoseconds.
fn worker_metadata(queue_id: &Value, target: Value) -> Vec<u8> {
    json!({
        "description": "Ran true", "command": "true", "codebase": "alpha", "vcs_type": "git",
        "branch_url": "https://git.example.org/alpha", "subpath": "", "main_branch_revision": "m1",
        "revision": "r1", "codemod": {"ok": true}, "remotes": {"origin": {"url": "https://git.example.org/alpha"}},
        "refreshed": false, "value": 10, "target_branch_url": "https://git.example.org/alpha",
        "branches": [["main", null, "m1", "r1"]], "tags": [["v1", "r1"]],
        "queue_id": queue_id, "campaign": "generic",
        "start_time": "2026-11-23T12:00:01.123456789Z", "finish_time": "2026-11-23T12:04:00Z",
        "target": target
    })
    .to_string()
    .into_bytes()
}

/// The metadata part of a successful generic run's finish.
fn generic_metadata(assignment: &Value) -> Part<'static> {
    (
        "metadata",
        Some("result.json"),
        "application/json",
        worker_metadata(
            &assignment["queue_id"],
            json!({"name": "generic", "details": {}}),
        ),
    )
}

/// An uploaded file part, as the worker sends logs and artifacts.
fn file_part(name: &'static str, data: Vec<u8>) -> Part<'static> {
    ("file", Some(name), "application/octet-stream", data)
}

fn gunzip(path: &std::path::Path) -> (u32, String) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = flate2::read::GzDecoder::new(file);
    let mut text = String::new();
    decoder.read_to_string(&mut text).unwrap();
    let mtime = decoder.header().unwrap().mtime();
    (mtime, text)
}

async fn finish_like_janitor_worker(store: Store) {
    let server = TestServer::start(store).await;
    seed(&server).await;
    let assignment = assign(&server, "generic").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    let body = multipart(&[
        generic_metadata(&assignment),
        file_part("worker.log", b"worker says hi\n".to_vec()),
        file_part("codemod.log", b"codemod output\n".to_vec()),
        file_part("notes.txt", b"not a log".to_vec()),
    ]);
    // With Redis, the stored result is announced on `result`, as the Python runner does.
    let mut results = match &server.redis_prefix {
        Some(_) => Some(common::subscribe(&server, "result").await),
        None => None,
    };
    let (status, response, location) =
        post_finish(&server.url(&format!("/active-runs/{id}/finish")), body).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    if let Some(pubsub) = &mut results {
        assert_eq!(
            common::next_message(pubsub, "result").await,
            response["result"]
        );
    }
    assert_eq!(location.as_deref(), Some(format!("/runs/{id}").as_str()));
    assert_eq!(response["id"], id.as_str());
    assert_eq!(
        response["filenames"],
        json!(["worker.log", "codemod.log", "notes.txt"])
    );
    assert_eq!(response["logs"], json!(["codemod.log", "worker.log"]));
    assert_eq!(response["artifacts"], json!([]));
    let result = &response["result"];
    assert_eq!(result["code"], "success");
    assert_eq!(result["start_time"], "2026-11-23T12:00:01.123456");
    assert_eq!(result["finish_time"], "2026-11-23T12:04:00");
    assert_eq!(result["change_set"], id.as_str());
    assert_eq!(result["target"], json!({"name": "generic", "details": {}}));

    let row: StoredRun = sqlx::query_as(
        "SELECT result_code, start_time::text AS start_time, finish_time::text AS finish_time,
                change_set, worker_link, instigated_context, logfilenames,
                result_tags::text AS result_tags
         FROM run WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(row.result_code, "success");
    assert_eq!(
        (row.start_time.as_str(), row.finish_time.as_str()),
        ("2026-11-23 12:00:01.123456", "2026-11-23 12:04:00")
    );
    assert_eq!(row.change_set, id);
    assert_eq!(row.worker_link.as_deref(), Some("http://10.0.0.5:8080/"));
    assert_eq!(row.instigated_context, "ctx");
    assert_eq!(row.logfilenames, ["codemod.log", "worker.log"]);
    assert_eq!(row.result_tags.as_deref(), Some("{\"(v1,r1)\"}"));
    let branches: i64 =
        sqlx::query_scalar("SELECT count(*) FROM new_result_branch WHERE run_id = $1")
            .bind(&id)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    assert_eq!(branches, 1);
    let queued: Vec<String> = sqlx::query_scalar("SELECT suite::text FROM queue")
        .fetch_all(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(
        queued,
        ["lintian-fixes"],
        "the finished item left the queue"
    );
    assert_eq!(
        server.state.store.get_run(&id).await.unwrap(),
        None,
        "the run was released"
    );
    if let Some(prefix) = &server.redis_prefix {
        // Also from the Python runner's keys, which the site and the publisher read.
        server.state.store.settle().await;
        for key in ["active-runs", "last-keepalive"] {
            let copied = common::redis_hash(prefix, key).await;
            assert!(
                !copied.contains_key(&id),
                "{key} still has the run: {copied:?}"
            );
        }
        let claims = common::redis_hash(prefix, "assigned-queue-items").await;
        assert!(
            !claims.values().any(|run| *run == id),
            "assigned-queue-items still has the run: {claims:?}"
        );
    }

    let log = server
        .storage
        .path()
        .join("logs/alpha")
        .join(&id)
        .join("worker.log.gz");
    let (mtime, text) = gunzip(&log);
    assert_eq!(text, "worker says hi\n");
    assert_eq!(
        mtime as i64,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(12, 4, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    );

    // The worker retries after a lost response: the run is stored, so 409 with its id,
    // and the worker can stop retrying.
    let again = multipart(&[(
        "metadata",
        Some("result.json"),
        "application/json",
        b"{}".to_vec(),
    )]);
    let (status, body, _) =
        post_finish(&server.url(&format!("/active-runs/{id}/finish")), again).await;
    assert_eq!(
        (status, body),
        (StatusCode::CONFLICT, json!({"id": id, "reason": id}))
    );
    let metrics = server.state.metrics.render();
    assert!(
        metrics.contains("result_total{campaign=\"generic\",result_code=\"success\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("logfile_uploads_total 2"), "{metrics}");
    server.stop().await;
}

per_store!(finish_like_janitor_worker, postgres => Store::Postgres, mirrored => Store::Mirrored, redis => Store::Redis);

const CHANGES: &str = "Source: alpha\nVersion: 1.0-1~jan+lint1\nDistribution: lintian-fixes\nFiles:\n \
0123 10 misc optional alpha_1.0-1~jan+lint1.dsc\n 4567 20 misc optional alpha_1.0-1~jan+lint1_amd64.deb\n";

#[tokio::test]
async fn debian_build_results_and_artifacts() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    let assignment = assign(&server, "lintian-fixes").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    let mut metadata: Value = serde_json::from_slice(&worker_metadata(
        &assignment["queue_id"],
        json!({"name": "debian", "details": {"lintian": {"version": "2.116"}}}),
    ))
    .unwrap();
    metadata["campaign"] = json!("lintian-fixes");
    let body = multipart(&[
        (
            "metadata",
            Some("result.json"),
            "application/json",
            metadata.to_string().into_bytes(),
        ),
        file_part("build.log", b"dpkg-buildpackage\n".to_vec()),
        file_part(
            "alpha_1.0-1~jan+lint1_amd64.changes",
            CHANGES.as_bytes().to_vec(),
        ),
        file_part("alpha_1.0-1~jan+lint1.dsc", b"dsc".to_vec()),
        file_part("alpha_1.0-1~jan+lint1_amd64.deb", b"deb".to_vec()),
    ]);
    let (status, response, _) =
        post_finish(&server.url(&format!("/active-runs/{id}/finish")), body).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    assert_eq!(
        response["artifacts"],
        json!([
            "alpha_1.0-1~jan+lint1.dsc",
            "alpha_1.0-1~jan+lint1_amd64.deb",
            "alpha_1.0-1~jan+lint1_amd64.changes"
        ])
    );
    assert_eq!(
        response["result"]["target"],
        json!({"name": "debian", "details": {"build_distribution": "lintian-fixes",
               "build_version": "1.0-1~jan+lint1", "changes_filenames": ["alpha_1.0-1~jan+lint1_amd64.changes"],
               "lintian": {"version": "2.116"}, "binary_packages": ["alpha"]}})
    );
    let build: (String, String, String, Vec<String>) = sqlx::query_as(
        "SELECT version::text, distribution, source, binary_packages FROM debian_build WHERE run_id = $1",
    )
    .bind(&id)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(
        build,
        (
            "1.0-1~jan+lint1".into(),
            "lintian-fixes".into(),
            "alpha".into(),
            vec!["alpha".into()]
        )
    );
    let stored = server
        .storage
        .path()
        .join("artifacts")
        .join(&id)
        .join("alpha_1.0-1~jan+lint1_amd64.deb");
    assert_eq!(std::fs::read(stored).unwrap(), b"deb");
    server.stop().await;
}

/// An assigner whose snapshot predates a claim can lock the claimed item's queue row (the
/// claiming transaction let go of it on commit); the run's finish must then wait for that
/// row before it releases the claim, so that the assigner's own claim meets the first one
/// and gives up. Releasing the claim first made each wait for the other: a deadlock, and a
/// 500 for the finish.
#[tokio::test]
async fn a_finish_waits_for_an_assigner_holding_its_item_without_deadlock() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    let assignment = assign(&server, "generic").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    let queue_id = assignment["queue_id"].as_i64().unwrap();

    let mut assigner = server.db.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM queue WHERE id = $1 FOR UPDATE")
        .bind(queue_id)
        .execute(&mut *assigner)
        .await
        .unwrap();
    let body = multipart(&[
        generic_metadata(&assignment),
        file_part("worker.log", b"worker says hi\n".to_vec()),
    ]);
    let url = server.url(&format!("/active-runs/{id}/finish"));
    let finish = tokio::spawn(async move { post_finish(&url, body).await });
    // The finish is waiting for the row the assigner holds. (Its statement opens with the
    // queue row's deletion; the `INSERT INTO run` is past the 1 kB of it the view shows.)
    let mut waiting = false;
    for _ in 0..200 {
        waiting = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity
                            WHERE datname = current_database() AND wait_event_type = 'Lock'
                              AND query LIKE 'WITH released AS (DELETE FROM queue%')",
        )
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waiting, "the finish never waited for the queue row");
    // The assigner's claim of the same item meets the run's claim, still in place.
    let claimed = sqlx::query(
        "INSERT INTO runner_active_run (id, queue_id, data) VALUES ('other', $1, '{}')
         ON CONFLICT DO NOTHING",
    )
    .bind(queue_id)
    .execute(&mut *assigner)
    .await
    .expect("the assigner's claim neither waits for the finish nor deadlocks with it");
    assert_eq!(claimed.rows_affected(), 0);
    assigner.rollback().await.unwrap();

    let (status, response, _) = finish.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{response}");
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_active_run")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(active, 0);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM queue WHERE id = $1")
        .bind(queue_id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
}

/// Stored runs delete their queue items; every `queue_vacuum_every` of them the runner
/// vacuums the queue, so that the next-item scan does not walk their dead index entries.
#[tokio::test]
async fn the_queue_is_vacuumed_after_so_many_stored_runs() {
    let server = TestServer::start_with(Store::Postgres, |settings| {
        settings.queue_vacuum_every = 1;
    })
    .await;
    seed(&server).await;
    let assignment = assign(&server, "generic").await;
    let (status, response, _) = post_finish(
        &server.url(&format!(
            "/active-runs/{}/finish",
            assignment["id"].as_str().unwrap()
        )),
        multipart(&[generic_metadata(&assignment)]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    for _ in 0..200 {
        if server.state.queue_upkeep.vacuums() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.queue_upkeep.vacuums(), 1);
    let vacuums: i64 =
        sqlx::query_scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'queue'")
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    assert_eq!(vacuums, 1);
    server.stop().await;
}

#[tokio::test]
async fn stored_run_id_is_a_conflict() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    let assignment = assign(&server, "generic").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    sql(&server, &format!(
        "INSERT INTO change_set (id, campaign) VALUES ('cs-x', 'generic');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames, change_set, codebase)
         VALUES ('{id}', 'x', now(), now(), 'success', 'generic', '{{}}', 'cs-x', 'alpha');"
    ))
    .await;
    let body = multipart(&[generic_metadata(&assignment)]);
    let (status, response, _) =
        post_finish(&server.url(&format!("/active-runs/{id}/finish")), body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{response}");
    assert_eq!(response["id"], id.as_str());
    assert!(response["reason"].is_string());
    assert_eq!(server.state.store.get_run(&id).await.unwrap(), None);
    server.stop().await;
}

/// The server keeps the JSON of the runs it handed out and finishes them without reading it
/// back; a claim another process released meanwhile is caught when the run is stored, and
/// answered as reading the store would have: 404 without a stored result, 409 with one.
#[tokio::test]
async fn a_claim_released_elsewhere_is_answered_as_the_store_would() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type) VALUES
             ('beta', 'https://git.example.org/beta', 'https://git.example.org/beta', 'git'),
             ('gamma', 'https://git.example.org/gamma', 'https://git.example.org/gamma', 'git');
         INSERT INTO queue (codebase, suite, command) VALUES
             ('beta', 'generic', 'true'), ('gamma', 'generic', 'true');",
    )
    .await;
    let count = |query: String| {
        let pool = server.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    let finish = |assignment: &Value| {
        let url = server.url(&format!(
            "/active-runs/{}/finish",
            assignment["id"].as_str().unwrap()
        ));
        let body = multipart(&[generic_metadata(assignment)]);
        async move {
            let (status, response, _) = post_finish(&url, body).await;
            (status, response)
        }
    };

    // Released without a result: not found, nothing stored, the item still queued.
    let released = assign(&server, "generic").await;
    let id = released["id"].as_str().unwrap().to_string();
    assert!(server.state.own_runs.get(&id).is_some());
    sql(
        &server,
        &format!("DELETE FROM runner_active_run WHERE id = '{id}'"),
    )
    .await;
    let (status, response) = finish(&released).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{response}");
    assert_eq!(
        count(format!("SELECT count(*) FROM run WHERE id = '{id}'")).await,
        0
    );
    let queue_id = released["queue_id"].as_i64().unwrap();
    assert_eq!(
        count(format!("SELECT count(*) FROM queue WHERE id = {queue_id}")).await,
        1
    );
    assert!(server.state.own_runs.get(&id).is_none());

    // Released with a result stored (another process's watchdog): a conflict.
    let aborted = assign(&server, "generic").await;
    let id = aborted["id"].as_str().unwrap().to_string();
    sql(&server, &format!(
        "DELETE FROM runner_active_run WHERE id = '{id}';
         INSERT INTO change_set (id, campaign) VALUES ('cs-aborted', 'generic');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames, change_set, codebase)
         VALUES ('{id}', 'x', now(), now(), 'worker-timeout', 'generic', '{{}}', 'cs-aborted', 'beta');"
    ))
    .await;
    let (status, response) = finish(&aborted).await;
    assert_eq!(status, StatusCode::CONFLICT, "{response}");
    assert_eq!(response["id"], id.as_str());

    // Still registered: stored, and forgotten.
    let finished = assign(&server, "generic").await;
    let id = finished["id"].as_str().unwrap().to_string();
    let (status, response) = finish(&finished).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    assert_eq!(
        count(format!("SELECT count(*) FROM run WHERE id = '{id}'")).await,
        1
    );
    assert!(server.state.own_runs.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn upload_attacks_are_refused_and_write_nothing() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO worker (name, password) VALUES ('w1', crypt('pw', gen_salt('bf', 4)));",
    )
    .await;
    let assignment = assign(&server, "generic").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    let url = server.url(&format!("/active-runs/{id}/finish"));
    let marker = format!("escape-{}", uuid::Uuid::new_v4().simple());
    let result = || {
        (
            "metadata",
            Some("result.json"),
            "application/json",
            b"{}".to_vec(),
        )
    };
    let nested = "--inner\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.log\"\r\n\r\nx\r\n--inner--\r\n".to_string();
    let traversal = format!("../{marker}");
    let absolute = format!("/tmp/{marker}");
    let backslash = format!("..\\{marker}");
    let nul = "a\0b.log".to_string();
    let long = "a".repeat(300);
    let cases: Vec<(Vec<Part<'_>>, StatusCode)> = vec![
        (
            vec![
                result(),
                (
                    "file",
                    Some(traversal.as_str()),
                    "application/octet-stream",
                    b"x".to_vec(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                (
                    "file",
                    Some(absolute.as_str()),
                    "application/octet-stream",
                    b"x".to_vec(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![result(), file_part("a/b.log", b"x".to_vec())],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                (
                    "file",
                    Some(backslash.as_str()),
                    "application/octet-stream",
                    b"x".to_vec(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                (
                    "file",
                    Some(nul.as_str()),
                    "application/octet-stream",
                    b"x".to_vec(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                ("file", Some(""), "application/octet-stream", b"x".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![result(), file_part("..", b"x".to_vec())],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                (
                    "file",
                    Some(long.as_str()),
                    "application/octet-stream",
                    b"x".to_vec(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                ("file", None, "application/octet-stream", b"x".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                result(),
                (
                    "file",
                    Some("inner"),
                    "multipart/mixed; boundary=inner",
                    nested.into_bytes(),
                ),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![file_part("worker.log", b"x".to_vec())],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![(
                "metadata",
                Some("result.json"),
                "application/json",
                b"{not json".to_vec(),
            )],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![(
                "metadata",
                Some("result.json"),
                "application/json",
                br#"{"target": {"name": "rpm", "details": {}}}"#.to_vec(),
            )],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![(
                "metadata",
                Some("result.json"),
                "application/json",
                br#"{"start_time": "2026-11-23T12:00:00Z", "finish_time": "2026-11-23T11:00:00Z"}"#
                    .to_vec(),
            )],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                (
                    "metadata",
                    Some("result.json"),
                    "application/json",
                    br#"{"code": "success", "description": "a\u0000b"}"#.to_vec(),
                ),
                file_part("worker.log", b"x".to_vec()),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![result(), file_part("big.log", vec![b'x'; 5 * 1024 * 1024])],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (parts, expected) in cases {
        let names: Vec<String> = parts.iter().map(|p| format!("{:?}", p.1)).collect();
        let (status, body, _) = post_finish(&url, multipart(&parts)).await;
        assert_eq!(status, expected, "{names:?}: {body}");
        assert!(body["reason"].is_string(), "{names:?}: {body}");
    }
    // Not multipart at all.
    let response = reqwest::Client::new()
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A declared 2 GiB body is refused before it is read (raw HTTP: the client sends 1 KiB).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.internal)
            .await
            .unwrap();
        let head = format!(
            "POST /active-runs/{id}/finish HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
            2_u64 << 30
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'x'; 1024]).await.unwrap();
        let mut response = vec![0; 4096];
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read(&mut response),
        )
        .await
        .expect("an answer without the body")
        .unwrap();
        let text = String::from_utf8_lossy(&response[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    }
    // Nothing escaped, nothing was stored, and the run is still waiting for a good upload.
    assert!(!std::path::Path::new(&format!("/tmp/{marker}")).exists());
    assert!(!std::env::temp_dir().join(&marker).exists());
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    assert!(!server.storage.path().join("logs").exists());
    assert!(server.state.store.get_run(&id).await.unwrap().is_some());

    // Public finish: credentials are checked before the run is looked up.
    let public = server.public_url("/runner/active-runs/no-such-run/finish");
    let (status, _, _) = post_finish(&public, multipart(&[result()])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = reqwest::Client::new()
        .post(server.public_url(&format!("/runner/active-runs/{id}/finish")))
        .basic_auth("w1", Some("pw"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(&[generic_metadata(&assignment)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("location").is_none());
    server.stop().await;
}

/// A log larger than what one upload keeps in memory (4 MiB) goes through the temporary
/// directory and is stored like the small one beside it, which stays in memory.
#[tokio::test]
async fn a_log_too_large_for_memory_is_stored_from_disk() {
    let server = TestServer::start_with(Store::Postgres, |settings| {
        settings.max_upload_size = 16 * 1024 * 1024;
    })
    .await;
    seed(&server).await;
    let assignment = assign(&server, "generic").await;
    let id = assignment["id"].as_str().unwrap().to_string();
    let big = "a build log line\n".repeat(5 * 1024 * 1024 / 17 + 1);
    let body = multipart(&[
        generic_metadata(&assignment),
        file_part("build.log", big.clone().into_bytes()),
        file_part("worker.log", b"worker says hi\n".to_vec()),
    ]);
    let (status, response, _) =
        post_finish(&server.url(&format!("/active-runs/{id}/finish")), body).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    assert_eq!(response["logs"], json!(["build.log", "worker.log"]));
    let logs = server.storage.path().join("logs/alpha").join(&id);
    assert_eq!(gunzip(&logs.join("build.log.gz")).1, big);
    assert_eq!(gunzip(&logs.join("worker.log.gz")).1, "worker says hi\n");
    server.stop().await;
}
