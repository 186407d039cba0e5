//! The internal and public apps over real HTTP: read routes and uploads.

use crate::common;

use common::{Store, TestServer, post, sql};
use janitor_runner::models::{ActiveRun, BackchannelInfo, QueueItem, VcsInfo};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn register(server: &TestServer, id: &str, queue_id: i64) {
    let item = QueueItem {
        id: queue_id,
        context: Some("ctx".into()),
        command: "lintian-brush".into(),
        estimated_duration: None,
        campaign: "lintian-fixes".into(),
        refresh: false,
        requester: None,
        change_set: None,
        codebase: "alpha".into(),
    };
    let run = ActiveRun::from_queue_item(
        &item,
        id.into(),
        common::fixed_now(),
        VcsInfo::default(),
        BackchannelInfo::None,
        Some("worker-1".into()),
        Some("https://ci/1".into()),
    );
    server
        .state
        .store
        .register_run(
            id,
            queue_id,
            &run.to_json(common::fixed_now()),
            common::fixed_now(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn health_status_and_empty_queue() {
    let server = TestServer::start(Store::Postgres).await;
    for path in ["/health", "/ready"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(
        get(&server, "/status").await,
        (
            StatusCode::OK,
            json!({"processing": [], "avoid_hosts": ["avoided.example.org"], "rate_limit_hosts": {}})
        )
    );
    assert_eq!(get(&server, "/queue").await, (StatusCode::OK, json!([])));
    assert_eq!(
        get(&server, "/active-runs").await,
        (StatusCode::OK, json!([]))
    );
    assert_eq!(
        get(
            &server,
            "/queue/position?codebase=alpha&campaign=lintian-fixes"
        )
        .await,
        (
            StatusCode::OK,
            json!({"position": null, "wait_time": null, "cumulative_wait_time": null})
        )
    );
    let root = reqwest::get(server.public_url("/")).await.unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "");
    server.stop().await;
}

#[tokio::test]
async fn every_uploaded_codebase_is_stored() {
    let server = TestServer::start(Store::Postgres).await;
    let upload = json!([
        {"name": "alpha", "branch_url": "https://git.example.org/alpha,branch=debian%2Fmain",
         "vcs_type": "git", "value": 200, "subpath": ""},
        {"name": "beta", "url": "https://git.example.org/beta", "branch": "feature/x y"},
        {"name": "gamma", "url": "https://bzr.example.org/gamma", "vcs_type": "bzr",
         "web_url": "https://bzr.example.org/gamma/web", "vcs_last_revision": "rev-1"}
    ]);
    assert_eq!(
        post(&server, "/codebases", upload).await,
        (StatusCode::OK, json!({}))
    );
    let (status, listed) = get(&server, "/codebases").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed,
        json!([
            {"name": "alpha", "branch_url": "https://git.example.org/alpha,branch=debian%2Fmain",
             "url": "https://git.example.org/alpha", "branch": "debian/main", "subpath": "",
             "vcs_type": "git", "web_url": null, "vcs_last_revision": null, "value": 200},
            {"name": "beta", "branch_url": "https://git.example.org/beta,branch=feature/x%20y",
             "url": "https://git.example.org/beta", "branch": "feature/x y", "subpath": null,
             "vcs_type": null, "web_url": null, "vcs_last_revision": null, "value": null},
            {"name": "gamma", "branch_url": "https://bzr.example.org/gamma",
             "url": "https://bzr.example.org/gamma", "branch": null, "subpath": null,
             "vcs_type": "bzr", "web_url": "https://bzr.example.org/gamma/web",
             "vcs_last_revision": "rev-1", "value": null}
        ])
    );
    // A re-upload overwrites by name; an empty upload is fine.
    let again = json!([{"name": "alpha", "url": "https://git.example.org/alpha2", "value": 5}]);
    assert_eq!(post(&server, "/codebases", again).await.0, StatusCode::OK);
    assert_eq!(
        post(&server, "/codebases", json!([])).await,
        (StatusCode::OK, json!({}))
    );
    let (_, listed) = get(&server, "/codebases").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["value"], 5);
    assert_eq!(listed[0]["branch"], Value::Null);
    // A failing entry writes nothing, not even the valid ones before it.
    let mixed = json!([{"name": "delta", "url": "https://x/delta"}, {"name": "Bad Name"}]);
    assert_eq!(
        post(&server, "/codebases", mixed).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, listed) = get(&server, "/codebases").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn candidate_upload_reports_and_stores() {
    let server = TestServer::start(Store::Postgres).await;
    post(
        &server,
        "/codebases",
        json!([{"name": "alpha", "url": "https://x/alpha"}, {"name": "beta", "url": "https://x/beta"}]),
    )
    .await;
    let upload = json!([
        {"codebase": "alpha", "campaign": "lintian-fixes", "value": 40, "success_chance": 0.5,
         "context": "ctx", "requester": "tester"},
        {"codebase": "beta", "campaign": "lintian-fixes", "command": "lintian-brush --uncertain"},
        {"codebase": "alpha", "campaign": "no-such-campaign"},
        {"codebase": "nowhere", "campaign": "lintian-fixes"},
        {"codebase": "beta", "campaign": "nocommand"},
        {"codebase": "beta", "campaign": "generic", "value": 0},
        {"codebase": "alpha", "campaign": "generic", "value": 0.0},
        {"codebase": "beta", "campaign": "generic", "publish-policy": "no-such-policy"}
    ]);
    let (status, report) = post(&server, "/candidates", upload).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["success"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["success"][0],
        json!({"campaign": "lintian-fixes", "codebase": "alpha", "bucket": "default",
               "change_set": null, "offset": 250.0, "estimated_duration": 15.0, "queue-id": 1,
               "refresh": false}),
        "value 40 + first-run bonus 100, no history: (20000 + 15000) / 140"
    );
    assert_eq!(report["unknown_campaigns"], json!(["no-such-campaign"]));
    assert_eq!(report["unknown_codebases"], json!(["nowhere"]));
    assert_eq!(report["invalid_command"], json!([null]));
    // The values as sent, as a Python set holds them: 0 and 0.0 are one member, the first.
    assert_eq!(report["invalid_value"], json!([0]));
    assert_eq!(
        report["unknown_publish_policies"],
        json!(["no-such-policy"])
    );
    let (_, candidates) = get(&server, "/candidates").await;
    assert_eq!(
        candidates[0],
        json!({"id": candidates[0]["id"], "codebase": "alpha", "campaign": "lintian-fixes",
               "command": "lintian-brush", "publish-policy": null, "change_set": null,
               "context": "ctx", "value": 40, "success_chance": 0.5})
    );
    assert_eq!(candidates[1]["command"], "lintian-brush --uncertain");
    assert_eq!(candidates.as_array().unwrap().len(), 2);

    // A malformed candidate rejects the whole upload.
    let (status, body) = post(
        &server,
        "/candidates",
        json!([{"codebase": "alpha", "campaign": "generic"}, {"campaign": "generic"}]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("no codebase field"),
        "{body}"
    );
    assert_eq!(
        get(&server, "/candidates")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The upload queued both; deleting removes the candidate and its queue items.
    let queued = |listing: Value| -> Vec<String> {
        listing
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["codebase"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(queued(get(&server, "/queue").await.1), ["alpha", "beta"]);
    let id = candidates[0]["id"].as_i64().unwrap();
    let response = reqwest::Client::new()
        .delete(server.url(&format!("/candidates/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(queued(get(&server, "/queue").await.1), ["beta"]);
    let response = reqwest::Client::new()
        .delete(server.url(&format!("/candidates/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

async fn queue_listing_and_positions(store: Store) {
    let server = TestServer::start(store).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url) VALUES
             ('alpha', 'https://x/alpha', 'https://x/alpha'),
             ('beta', 'https://x/beta', 'https://x/beta'),
             ('gamma', 'https://x/gamma', 'https://x/gamma');
         INSERT INTO queue (codebase, suite, command, bucket, priority, estimated_duration, context)
         VALUES ('alpha', 'lintian-fixes', 'lintian-brush', 'default', 10, interval '45 seconds', 'c1'),
                ('beta', 'lintian-fixes', 'lintian-brush', 'manual', 500, interval '30 seconds', NULL),
                ('gamma', 'generic', 'true', 'default', 5, NULL, NULL);",
    )
    .await;
    let (status, queue) = get(&server, "/queue").await;
    assert_eq!(status, 200);
    let order: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["codebase"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["beta", "gamma", "alpha"]);
    assert_eq!(
        queue[2],
        json!({"queue_id": queue[2]["queue_id"], "codebase": "alpha",
               "campaign": "lintian-fixes", "context": "c1", "command": "lintian-brush"})
    );
    assert_eq!(
        get(&server, "/queue?limit=1")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&server, "/queue?limit=0")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Nothing running: no per-run wait, but the cumulative wait is known.
    let position = "/queue/position?codebase=alpha&campaign=lintian-fixes";
    assert_eq!(
        get(&server, position).await.1,
        json!({"position": 3, "wait_time": null, "cumulative_wait_time": 30.0})
    );
    register(&server, "run-1", 1).await;
    register(&server, "run-2", 2).await;
    assert_eq!(
        get(&server, position).await.1,
        json!({"position": 3, "wait_time": 15.0, "cumulative_wait_time": 30.0})
    );
    assert_eq!(
        get(
            &server,
            "/queue/position?codebase=beta&campaign=lintian-fixes"
        )
        .await
        .1,
        json!({"position": 1, "wait_time": 0.0, "cumulative_wait_time": 0.0})
    );
    server.stop().await;
}

per_store!(queue_listing_and_positions, postgres => Store::Postgres, redis => Store::Redis);

async fn active_runs_and_status(store: Store) {
    let server = TestServer::start(store).await;
    register(&server, "run-1", 7).await;
    server.clock.advance(chrono::TimeDelta::seconds(90));
    let (status, runs) = get(&server, "/active-runs").await;
    assert_eq!(status, 200);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let run = &runs[0];
    assert_eq!(run["id"], "run-1");
    assert_eq!(
        run["current_duration"], 0.0,
        "stored value, as Python serves it"
    );
    assert_eq!(run["last-keepalive"], "2026-11-23T12:00:00");
    assert_eq!(run["keepalive_age"], 90.0);
    assert_eq!(run["mia"], false);
    let (status, one) = get(&server, "/active-runs/run-1").await;
    assert_eq!(status, 200);
    assert_eq!(one["current_duration"], 90.0);
    assert_eq!(one["worker_link"], "https://ci/1");
    assert!(one.get("mia").is_none());
    let public = reqwest::get(server.public_url("/runner/active-runs/run-1"))
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let (status, missing) = get(&server, "/active-runs/nope").await;
    assert_eq!(
        (status, missing),
        (StatusCode::NOT_FOUND, json!({"reason": "no such run nope"}))
    );

    server.clock.advance(chrono::TimeDelta::minutes(61));
    server
        .state
        .store
        .rate_limit_host(
            "salsa.debian.org",
            server.clock_now() + chrono::TimeDelta::seconds(30),
        )
        .await
        .unwrap();
    let (_, status_json) = get(&server, "/status").await;
    assert_eq!(status_json["processing"][0]["mia"], true);
    assert_eq!(
        status_json["rate_limit_hosts"],
        json!({"salsa.debian.org": "2026-11-23T13:03:00"})
    );
    server.stop().await;
}

per_store!(active_runs_and_status, postgres => Store::Postgres, redis => Store::Redis);

#[tokio::test]
async fn runs_and_publish_status() {
    let server = TestServer::start(Store::Redis).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url) VALUES ('alpha', 'https://x/a', 'https://x/a');
         INSERT INTO change_set (id, campaign) VALUES ('cs1', 'lintian-fixes');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames,
                          change_set, codebase, revision)
         VALUES ('run-1', 'x', now(), now(), 'success', 'lintian-fixes', '{}', 'cs1', 'alpha', 'rev'),
                ('run-2', 'x', now(), now(), 'success', 'lintian-fixes', '{}', 'cs1', 'alpha', NULL);",
    )
    .await;
    assert_eq!(
        get(&server, "/runs/run-1").await,
        (
            StatusCode::OK,
            json!({"codebase": "alpha", "campaign": "lintian-fixes", "publish_status": "unknown"})
        )
    );
    assert_eq!(
        get(&server, "/runs/missing").await,
        (
            StatusCode::NOT_FOUND,
            json!({"reason": "no such run: missing"})
        )
    );

    let mut pubsub = common::subscribe(&server, "publish-status").await;

    let expected = json!({"run_id": "run-1", "publish_status": "approved", "codebase": "alpha",
                          "campaign": "lintian-fixes"});
    assert_eq!(
        post(
            &server,
            "/runs/run-1",
            json!({"publish_status": "approved"})
        )
        .await,
        (StatusCode::OK, expected.clone())
    );
    let payload = common::next_message(&mut pubsub, "publish-status").await;
    assert_eq!(payload, expected);
    assert_eq!(
        get(&server, "/runs/run-1").await.1["publish_status"],
        "approved"
    );
    let (status, body) = post(
        &server,
        "/runs/run-2",
        json!({"publish_status": "approved"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_requests() {
    let server = TestServer::start(Store::Postgres).await;
    get(&server, "/status").await;
    get(&server, "/runs/missing").await;
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"requests_total{method="GET",route="status",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"requests_total{method="GET",route="get-run",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains("request_latency_seconds_bucket"), "{text}");
    server.stop().await;
}
