//! Bad input never gets a 5xx: every malformed request below gets a 4xx with a JSON
//! `{"reason": "..."}`, and nothing is written.

mod common;

use common::{Store, TestServer};
use reqwest::Method;

enum Body {
    None,
    Raw(&'static str),
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

struct Case {
    method: Method,
    path: String,
    body: Body,
    expect: u16,
}

fn case(method: Method, path: &str, body: Body, expect: u16) -> Case {
    Case {
        method,
        path: path.to_string(),
        body,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Body::*;
    use serde_json::json;
    let post = Method::POST;
    let get = Method::GET;
    let huge = vec![b' '; 2 * 1024 * 1024];
    let mut huge_json = b"[".to_vec();
    huge_json.extend(std::iter::repeat_n(b"{\"name\":\"aa\"},".as_slice(), 100_000).flatten());
    huge_json.extend(b"{}]");
    vec![
        // Framework level.
        case(get.clone(), "/no-such-route", None, 404),
        case(get.clone(), "/status/", None, 404),
        case(Method::DELETE, "/status", None, 405),
        case(Method::PUT, "/codebases", Json(json!([])), 405),
        case(Method::PATCH, "/candidates", None, 405),
        // /queue and /queue/position.
        case(get.clone(), "/queue?limit=abc", None, 400),
        case(get.clone(), "/queue?limit=-5", None, 400),
        case(get.clone(), "/queue?limit=1.5", None, 400),
        case(get.clone(), "/queue/position", None, 400),
        case(get.clone(), "/queue/position?codebase=alpha", None, 400),
        case(
            get.clone(),
            "/queue/position?campaign=lintian-fixes",
            None,
            400,
        ),
        // POST /codebases.
        case(post.clone(), "/codebases", None, 400),
        case(post.clone(), "/codebases", Raw("{not json"), 400),
        case(post.clone(), "/codebases", Raw("   "), 400),
        case(
            post.clone(),
            "/codebases",
            Json(json!({"name": "alpha"})),
            400,
        ),
        case(post.clone(), "/codebases", Json(json!("alpha")), 400),
        case(post.clone(), "/codebases", Json(json!([1, 2])), 400),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "Alpha"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "a"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "a_b", "url": "https://x"}])),
            400,
        ),
        case(post.clone(), "/codebases", Json(json!([{"name": 42}])), 400),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "vcs_type": "cvsnt"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "value": "high"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "value": 1.5}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "value": 1_i64 << 40}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "branch": "main"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "branch_url": "https://x/a,nonsense"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "branch_url": "https://x/a,branch=%ff"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"subpath": "x"}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "alpha", "url": ["x"]}])),
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(
                json!([{"url": "https://x/same", "subpath": ""}, {"url": "https://x/same", "subpath": ""}]),
            ),
            409,
        ),
        case(post.clone(), "/codebases", Bytes(huge.clone()), 413),
        case(post.clone(), "/codebases", Bytes(huge_json), 413),
        // POST /candidates.
        case(post.clone(), "/candidates", Raw("[{"), 400),
        case(post.clone(), "/candidates", Json(json!({})), 400),
        case(post.clone(), "/candidates", Json(json!([null])), 400),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"campaign": "generic"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": null, "campaign": "generic"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": 7, "campaign": "generic"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": ["generic"]}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "value": -1}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "value": "9"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "value": 2.5}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "success_chance": "likely"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "bucket": "urgent"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "command": 5}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha", "campaign": "generic", "followup_for": "run-1"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(
                json!([{"codebase": "alpha", "campaign": "generic", "followup_for": ["no-such-run"]}]),
            ),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(
                json!([{"codebase": "alpha", "campaign": "generic", "change_set": "no-such-set"}]),
            ),
            400,
        ),
        case(post.clone(), "/candidates", Bytes(huge), 413),
        // DELETE /candidates/{id}.
        case(Method::DELETE, "/candidates/abc", None, 400),
        case(Method::DELETE, "/candidates/1.5", None, 400),
        case(Method::DELETE, "/candidates/99999999999", None, 400),
        case(Method::DELETE, "/candidates/424242", None, 404),
        // /runs/{id}.
        case(get.clone(), "/runs/no-such-run", None, 404),
        case(
            post.clone(),
            "/runs/no-such-run",
            Json(json!({"publish_status": "approved"})),
            404,
        ),
        case(post.clone(), "/runs/run-1", None, 400),
        case(post.clone(), "/runs/run-1", Raw("nope"), 400),
        case(post.clone(), "/runs/run-1", Json(json!([])), 400),
        case(post.clone(), "/runs/run-1", Json(json!({})), 400),
        case(
            post.clone(),
            "/runs/run-1",
            Json(json!({"publish_status": "maybe"})),
            400,
        ),
        case(
            post.clone(),
            "/runs/run-1",
            Json(json!({"publish_status": 1})),
            400,
        ),
        case(
            post.clone(),
            "/runs/run-2",
            Json(json!({"publish_status": "approved"})),
            409,
        ),
        // Active runs.
        case(get.clone(), "/active-runs/no-such-run", None, 404),
        case(get.clone(), "/active-runs/%FF%FE", None, 400),
        // NUL bytes, which PostgreSQL refuses in text and in jsonb strings.
        case(get.clone(), "/runs/%00", None, 400),
        case(
            post.clone(),
            "/runs/%00",
            Json(json!({"publish_status": "approved"})),
            400,
        ),
        case(get.clone(), "/active-runs/%00", None, 400),
        case(
            get.clone(),
            "/queue/position?codebase=%00&campaign=generic",
            None,
            400,
        ),
        case(
            post.clone(),
            "/codebases",
            Json(json!([{"name": "nul\u{0}", "url": "https://x/n"}])),
            400,
        ),
        case(
            post.clone(),
            "/candidates",
            Json(json!([{"codebase": "alpha\u{0}", "campaign": "generic"}])),
            400,
        ),
        case(
            post.clone(),
            "/active-runs",
            Json(json!({"worker": "w", "worker_link": "https://w/\u{0}"})),
            400,
        ),
    ]
}

async fn assert_rejected(client: &reqwest::Client, base: &str, case: Case) {
    let url = format!("{base}{}", case.path);
    let mut request = client.request(case.method.clone(), &url);
    request = match case.body {
        Body::None => request,
        Body::Raw(text) => request.body(text),
        Body::Json(value) => request.json(&value),
        Body::Bytes(bytes) => request.body(bytes),
    };
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {url}: {e}", case.method));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.unwrap();
    assert_eq!(status, case.expect, "{} {url}: {text}", case.method);
    assert!(
        content_type.starts_with("application/json"),
        "{} {url}: {content_type}",
        case.method
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} {url}: body is not JSON ({e}): {text}", case.method));
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        !reason.is_empty(),
        "{} {url}: no reason in {text}",
        case.method
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_json_reasons() {
    let server = TestServer::start(Store::Postgres).await;
    sqlx::raw_sql(
        "INSERT INTO codebase (name, url, branch_url) VALUES ('alpha', 'https://x/a', 'https://x/a');
         INSERT INTO change_set (id, campaign) VALUES ('cs1', 'generic');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames,
                          change_set, codebase)
         VALUES ('run-1', 'x', now(), now(), 'success', 'generic', '{}', 'cs1', 'alpha'),
                ('run-2', 'x', now(), now(), 'success', 'generic', '{}', 'cs1', 'alpha');",
    )
    .execute(&server.db.pool)
    .await
    .unwrap();
    let cases = cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    // A 413 closes the connection before the body is read; new connections keep cases apart.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = server.url("");
    for case in cases {
        assert_rejected(&client, &base, case).await;
    }
    // Nothing was written by any of them.
    let codebases: i64 = sqlx::query_scalar("SELECT count(*) FROM codebase")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    let candidates: i64 = sqlx::query_scalar("SELECT count(*) FROM candidate")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT publish_status::text FROM run ORDER BY id")
            .fetch_all(&server.db.pool)
            .await
            .unwrap();
    assert_eq!((codebases, candidates), (1, 0));
    assert_eq!(statuses, ["unknown", "unknown"]);
    // And no request counted as a server error.
    let metrics = server.state.metrics.render();
    assert!(!metrics.contains("status=\"5"), "{metrics}");
    server.stop().await;
}
