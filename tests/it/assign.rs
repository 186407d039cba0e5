//! Assignment over HTTP: what the worker gets, what is claimed, and what is finished instead
//! of handed out.

use crate::common;

use common::{Store, TestServer, sql};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/worker_assignment.schema.json"
    ))
    .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_worker_accepts(assignment: &Value) {
    let validator = schema();
    let errors: Vec<String> = validator
        .iter_errors(assignment)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the worker would reject this assignment: {errors:?}\n{assignment:#}"
    );
}

async fn assign(server: &TestServer, body: Value) -> (StatusCode, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/active-runs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, response.json().await.unwrap())
}

const WORKER_BODY: &str = r#"{"node": "n1", "archs": ["amd64"], "worker_link": "http://10.0.0.5:8080/",
    "codebase": null, "campaign": null, "backchannel": {"kind": "http", "url": "http://10.0.0.5:8080/"}}"#;

async fn seed(server: &TestServer) {
    sql(
        server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
             ('alpha', 'https://git.example.org/alpha', 'https://git.example.org/alpha', 'git', ''),
             ('beta', 'https://bzr.example.org/beta', 'https://bzr.example.org/beta', 'bzr', NULL),
             ('nourl', NULL, NULL, NULL, NULL),
             ('hg', 'https://hg.example.org/hg', 'https://hg.example.org/hg', 'hg', '');
         INSERT INTO codebase (name) VALUES ('noname-needed');",
    )
    .await;
}

/// Without a public VCS location nothing is handed out, and nothing is aborted either: the
/// items wait for a runner that can tell workers where to push.
#[tokio::test]
async fn no_vcs_location_assigns_nothing_and_changes_nothing() {
    let server = TestServer::start_with(Store::Postgres, |settings| {
        settings.public_vcs_location = None;
    })
    .await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'generic', 'true')",
    )
    .await;
    let (status, _, body) = assign(&server, serde_json::from_str(WORKER_BODY).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("--public-vcs-location"),
        "{body}"
    );
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM queue), (SELECT count(*) FROM run)")
            .fetch_one(&server.state.pool)
            .await
            .unwrap();
    assert_eq!(counts, (1, 0));
    assert_eq!(server.state.store.active_run_count().await.unwrap(), 0);
    server.stop().await;
}

/// DECISIONS.md 14: without a `control` campaign in the configuration, a control run (as the
/// publisher schedules them) is handed out with the default one, not aborted.
#[tokio::test]
async fn control_runs_are_assigned_without_a_configured_control_campaign() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command, bucket, estimated_duration)
         VALUES ('alpha', 'control', 'brz up --revision=abc', 'control', interval '60 seconds')",
    )
    .await;
    let (status, _, body) = assign(&server, serde_json::from_str(WORKER_BODY).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_worker_accepts(&body);
    assert_eq!(body["campaign"], "control");
    assert_eq!(body["command"], "brz up --revision=abc");
    assert_eq!(body["force-build"], true);
    assert_eq!(body["build"]["target"], "generic");
    let aborted: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(&server.state.pool)
        .await
        .unwrap();
    assert_eq!(aborted, 0);
    server.stop().await;
}

async fn worker_gets_a_valid_generic_assignment(store: Store) {
    let server = TestServer::start(store).await;
    seed(&server).await;
    assert_eq!(
        assign(&server, serde_json::from_str(WORKER_BODY).unwrap()).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            json!({"reason": "queue empty"})
        )
    );
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command, estimated_duration, context)
         VALUES ('alpha', 'generic', 'FOO=bar BAZ=''x y'' true --flag', interval '60 seconds', 'ctx')",
    )
    .await;
    let (status, location, body) =
        assign(&server, serde_json::from_str(WORKER_BODY).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        location.as_deref(),
        Some(format!("/active-runs/{id}").as_str())
    );
    assert_worker_accepts(&body);
    assert_eq!(body["description"], "generic on alpha");
    assert_eq!(body["command"], "true --flag");
    assert_eq!(
        body["codemod"],
        json!({"command": "true --flag", "environment": {}})
    );
    assert_eq!(body["env"]["FOO"], "bar");
    assert_eq!(body["env"]["BAZ"], "x y");
    assert_eq!(body["env"]["GIT_AUTHOR_EMAIL"], "janitor@example.org");
    assert_eq!(
        body["branch"],
        json!({"default-empty": false, "url": "https://git.example.org/alpha", "subpath": "",
               "vcs_type": "git", "cached_url": "http://127.0.0.1:1/vcs/git/alpha,branch=main,name=main",
               "additional_colocated_branches": null})
    );
    assert_eq!(
        body["target_repository"],
        json!({"url": "http://127.0.0.1:1/vcs/git/alpha", "vcs_type": "git"})
    );
    assert_eq!(
        body["build"],
        json!({"target": "generic", "environment": {}, "config": {"dep_server_url": null}})
    );
    assert_eq!(body["force-build"], false);
    assert_eq!(body["resume"], Value::Null);

    // The run is registered with the worker's backchannel, and the item is held.
    let run: Value = reqwest::get(server.url(&format!("/active-runs/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        run["backchannel"],
        json!({"my_url": "http://10.0.0.5:8080/"})
    );
    assert_eq!(run["command"], "FOO=bar BAZ='x y' true --flag");
    assert_eq!(run["estimated_duration"], 60.0);
    assert_eq!(run["instigated_context"], "ctx");
    assert_eq!(run["worker"], Value::Null);
    assert_eq!(
        assign(&server, json!({})).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "a claimed item was handed out twice"
    );
    let metrics = server.state.metrics.render();
    assert!(metrics.contains("run_count_total 1"), "{metrics}");
    assert!(metrics.contains("queue_empty_total 2"), "{metrics}");
    assert!(
        metrics.contains("assignments_total{worker=\"None\"} 3"),
        "{metrics}"
    );
    server.stop().await;
}

per_store!(worker_gets_a_valid_generic_assignment, postgres => Store::Postgres, mirrored => Store::Mirrored, redis => Store::Redis);

async fn unassignable_items_are_finished_and_released(store: Store) {
    let server = TestServer::start(store).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command, bucket) VALUES
             ('alpha', 'no-such-campaign', 'x', 'update-existing-mp'),
             ('nourl', 'generic', 'true', 'manual'),
             ('hg', 'generic', 'true', 'control'),
             ('alpha', 'broken', 'x', 'hook'),
             ('beta', 'generic', 'echo ''unbalanced', 'reschedule'),
             ('nourl', 'empty-ok', 'debianize', 'default');",
    )
    .await;
    // An unassignable item another run holds (registered by hand) is that run's to end:
    // it is neither finished here nor released.
    let held: i64 = sqlx::query_scalar(
        "INSERT INTO queue (codebase, suite, command, bucket)
         VALUES ('beta', 'no-such-campaign', 'x', 'update-existing-mp') RETURNING id::int8",
    )
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    server
        .state
        .store
        .register_run(
            "held-elsewhere",
            held,
            &json!({"queue_id": held}),
            common::fixed_now(),
        )
        .await
        .unwrap();
    // A worker that names itself without being registered: its aborted runs are stored
    // without the name rather than failing on the `worker` foreign key.
    let (status, _, body) = assign(&server, json!({"worker": "unregistered"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_worker_accepts(&body);
    assert_eq!(
        (body["codebase"].as_str(), body["campaign"].as_str()),
        (Some("nourl"), Some("empty-ok"))
    );
    assert_eq!(body["branch"]["url"], Value::Null);
    assert_eq!(body["branch"]["vcs_type"], "git");
    assert_eq!(body["branch"]["default-empty"], true);
    assert_eq!(body["build"]["config"]["chroot"], "sid");
    let runs: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT codebase, result_code, description, change_set FROM run ORDER BY start_time, result_code",
    )
    .fetch_all(&server.db.pool)
    .await
    .unwrap();
    let codes: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "invalid-build-config",
            "invalid-command",
            "not-in-vcs",
            "unknown-campaign",
            "unsupported-vcs"
        ]
    );
    assert!(
        runs.iter()
            .any(|r| r.2.as_deref() == Some("Campaign no-such-campaign unknown"))
    );
    assert!(
        runs.iter()
            .any(|r| r.2.as_deref() == Some("No VCS URL known for codebase."))
    );
    assert!(
        runs.iter()
            .any(|r| r.2.as_deref() == Some("Unsupported distribution: no-such-dist"))
    );
    let named: i64 = sqlx::query_scalar("SELECT count(*) FROM run WHERE worker IS NOT NULL")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(named, 0);
    // Each aborted run got its own change set; only the handed-out item and the one held
    // elsewhere are left in the queue, and only they are claimed.
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 2);
    let mut claimed = server.state.store.assigned_queue_ids().await.unwrap();
    claimed.sort_unstable();
    let handed_out = body["queue_id"].as_i64().unwrap();
    assert_eq!(claimed, {
        let mut expected = vec![held, handed_out];
        expected.sort_unstable();
        expected
    });
    server.stop().await;
}

per_store!(unassignable_items_are_finished_and_released, postgres => Store::Postgres, mirrored => Store::Mirrored, redis => Store::Redis);

#[tokio::test]
async fn peek_changes_nothing() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command, bucket) VALUES
             ('alpha', 'no-such-campaign', 'x', 'manual'),
             ('beta', 'generic', 'true', 'default');",
    )
    .await;
    let response = reqwest::get(server.url("/active-runs/+peek"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["codebase"], "beta");
    assert_eq!(body["branch"]["vcs_type"], "bzr");
    assert_eq!(body["branch"]["subpath"], "");
    assert_eq!(
        body["branch"]["cached_url"],
        "http://127.0.0.1:1/vcs/bzr/beta/main"
    );
    assert_worker_accepts(&body);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!((runs, queued), (0, 2));
    assert_eq!(server.state.store.active_run_count().await.unwrap(), 0);
    server.stop().await;
}

#[tokio::test]
async fn debian_build_configuration() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO change_set (id, campaign) VALUES ('cs1', 'lintian-fixes');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames, change_set, codebase)
         VALUES ('old-1', 'x', now(), now(), 'success', 'lintian-fixes', '{}', 'cs1', 'alpha'),
                ('old-2', 'x', now(), now(), 'success', 'lintian-fixes', '{}', 'cs1', 'alpha');
         INSERT INTO debian_build (run_id, version, distribution, source)
         VALUES ('old-1', '1.0-9', 'lintian-fixes', 'alpha'), ('old-2', '1.0-10', 'lintian-fixes', 'alpha');
         INSERT INTO queue (codebase, suite, command, change_set) VALUES ('alpha', 'lintian-fixes', 'lintian-brush', 'cs1');",
    )
    .await;
    let (status, _, body) = assign(&server, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_worker_accepts(&body);
    assert_eq!(body["build"]["target"], "debian");
    assert_eq!(
        body["build"]["config"],
        json!({
            "lintian": {"profile": null},
            "build-extra-repositories": ["deb [trusted=yes] https://apt.example.org/ cs/cs1 main"],
            "build-distribution": "lintian-fixes",
            "build-suffix": "jan+lint",
            "last-build-version": "1.0-10",
            "base-apt-repository": "http://deb.example.org/debian unstable main",
            "base-apt-repository-signed-by": null,
            "dep_server_url": null
        })
    );
    assert_eq!(body["build"]["environment"]["DISTRIBUTION"], "unstable");
    assert_eq!(
        body["build"]["environment"]["APT_REPOSITORY"],
        "http://deb.example.org/debian unstable main"
    );
    assert_eq!(
        body["branch"]["cached_url"],
        format!(
            "http://127.0.0.1:1/vcs/git/alpha,branch={0}%2Flatest,name={0}%2Flatest",
            server.state.host_vendor.to_lowercase()
        )
    );
    assert_eq!(
        body["build"]["environment"]["DEB_VENDOR"],
        server.state.host_vendor
    );
    server.stop().await;
}

async fn filters_and_excluded_hosts(store: Store) {
    let server = TestServer::start(store).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type) VALUES
             ('avoided', 'https://avoided.example.org/x', 'https://avoided.example.org/x', 'git'),
             ('limited', 'https://user@limited.example.org/x', 'https://user@limited.example.org/x', 'git');
         INSERT INTO queue (codebase, suite, command, priority) VALUES
             ('avoided', 'generic', 'true', 1), ('limited', 'generic', 'true', 2),
             ('alpha', 'generic', 'true', 3), ('beta', 'lintian-fixes', 'x', 4), ('beta', 'generic', 'true', 5);",
    )
    .await;
    server
        .state
        .store
        .rate_limit_host(
            "limited.example.org",
            server.clock_now() + chrono::TimeDelta::seconds(60),
        )
        .await
        .unwrap();
    let (status, _, body) =
        assign(&server, json!({"campaign": "generic", "codebase": "beta"})).await;
    assert_eq!(
        (status, body["codebase"].as_str(), body["campaign"].as_str()),
        (StatusCode::CREATED, Some("beta"), Some("generic"))
    );
    let (_, _, body) = assign(&server, json!({})).await;
    assert_eq!(
        body["codebase"], "alpha",
        "avoided and rate-limited hosts are skipped"
    );
    let (status, _, body) = assign(&server, json!({"codebase": "avoided"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _, body) = assign(&server, json!({"codebase": "limited"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Once its block has ended, the limited host's item goes out.
    server.clock.advance(chrono::TimeDelta::seconds(61));
    let (status, _, body) = assign(&server, json!({"codebase": "limited"})).await;
    assert_eq!(
        (status, body["codebase"].as_str()),
        (StatusCode::CREATED, Some("limited")),
        "{body}"
    );
    server.stop().await;
}

per_store!(filters_and_excluded_hosts, postgres => Store::Postgres, mirrored => Store::Mirrored, redis => Store::Redis);

#[tokio::test]
async fn public_assign_requires_worker_credentials() {
    let server = TestServer::start(Store::Postgres).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO worker (name, password) VALUES ('w1', crypt('s3cret', gen_salt('bf', 4)));
         INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'generic', 'true');",
    )
    .await;
    let client = reqwest::Client::new();
    let url = server.public_url("/runner/active-runs");
    for request in [
        client.post(&url).body("not even json"),
        client
            .post(&url)
            .basic_auth("w1", Some("wrong"))
            .json(&json!({})),
        client
            .post(&url)
            .basic_auth("nobody", Some("s3cret"))
            .json(&json!({})),
        client.post(&url).bearer_auth("token").json(&json!({})),
        client
            .post(&url)
            .header("authorization", "Basic !!!")
            .json(&json!({})),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic Realm=\"Janitor\""
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .starts_with("worker login required")
        );
    }
    let response = client
        .post(&url)
        .basic_auth("w1", Some("s3cret"))
        .json(&json!({"worker": "someone-else", "worker_link": "https://ci/9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/runner/active-runs/{}", body["id"].as_str().unwrap())
    );
    let run: Value = reqwest::get(server.public_url(&location))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["worker"], "w1");
    assert_eq!(run["worker_link"], "https://ci/9");
    server.stop().await;
}

#[tokio::test]
async fn bad_assign_requests() {
    let server = TestServer::start(Store::Postgres).await;
    for body in [
        json!({"backchannel": {"url": "http://x/"}}),
        json!({"backchannel": {"kind": "http"}}),
        json!({"backchannel": {"kind": "http", "url": "not a url"}}),
        json!({"backchannel": "http://x/"}),
        json!({"worker": 5}),
        json!([]),
    ] {
        let (status, _, response) = assign(&server, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {response}");
        assert!(response["reason"].is_string());
    }
    server.stop().await;
}

#[tokio::test]
async fn assignment_is_announced_on_the_queue_channel() {
    let server = TestServer::start(Store::Redis).await;
    seed(&server).await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'generic', 'true')",
    )
    .await;
    let mut pubsub = common::subscribe(&server, "queue").await;
    let (status, _, body) = assign(&server, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let status = common::next_message(&mut pubsub, "queue").await;
    assert_eq!(status["processing"][0]["id"], body["id"]);
    assert_eq!(status["avoid_hosts"], json!(["avoided.example.org"]));
    server.stop().await;
}
