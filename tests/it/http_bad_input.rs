//! Bad input never gets a 5xx: every malformed request below gets a 4xx with a JSON
//! `{"reason": "..."}`, and nothing is written.

use crate::common;

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

/// Generated bodies: JSON of every shape (keys the routes read, NULs, deep nesting, numbers
/// beyond any integer type), raw bytes, invalid UTF-8, and multipart uploads with odd
/// boundaries, headers and part names. Every answer must be a 4xx or 2xx with a JSON body or
/// the protocol's own 503 for an empty queue; never a 5xx, never a dropped connection (a
/// handler panic). `JR_FUZZ_CASES` sets the bodies per route (default 10,000); the run stops
/// early after `JR_FUZZ_SECONDS` per route (default 6; three times that for the finish
/// parser), so CI time stays bounded. The seeds are fixed: a failure reproduces.
mod generated {
    use super::*;
    use futures::StreamExt;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use serde_json::Value;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const BOUNDARY: &str = "jr-fuzz-boundary";

    /// Keys the JSON routes read, so generated objects reach past the first check.
    const KEYS: &[&str] = &[
        "name",
        "url",
        "branch_url",
        "vcs_type",
        "subpath",
        "value",
        "inactive",
        "codebase",
        "campaign",
        "command",
        "success_chance",
        "publish_policy",
        "change_set",
        "context",
        "requester",
        "refresh",
        "offset",
        "bucket",
        "estimated_duration",
        "main_branch_revision",
        "publish_status",
        "worker",
        "worker_link",
        "backchannel",
        "kind",
        "my_url",
        "jenkins_url",
        "node",
        "archs",
        "code",
        "description",
        "details",
        "target",
        "branches",
        "tags",
        "start_time",
        "finish_time",
        "transient",
        "stage",
        "failure_details",
        "revision",
        "queue_id",
        "id",
        "duration",
        "remotes",
        "refreshed",
        "builder_result",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "\\PC{0,24}",
            1 => Just("\0".to_string()),
            1 => Just("../../etc/passwd".to_string()),
            1 => "[a-z0-9/%.-]{0,40}",
            1 => Just("2026-11-29T12:00:00Z".to_string()),
            1 => Just("x".repeat(10_000)),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(KEYS).prop_map(str::to_string),
            1 => text(),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// A request body: mostly JSON, otherwise text that is almost JSON or not at all.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            // A list of objects, the shape of the upload routes.
            3 => proptest::collection::vec(json(), 0..4)
                .prop_map(|v| serde_json::to_vec(&Value::Array(v)).unwrap()),
            1 => proptest::collection::vec(any::<u8>(), 0..256),
            1 => (1usize..5_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
            1 => (1usize..5_000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
            1 => proptest::sample::select(KEYS).prop_flat_map(|k| {
                prop_oneof![
                    Just(format!("{{\"{k}\": 1{}}}", "0".repeat(400)).into_bytes()),
                    Just(format!("{{\"{k}\": 1e999999}}").into_bytes()),
                    Just(format!("{{\"{k}\": -0.0e-999}}").into_bytes()),
                    Just(format!("{{\"{k}\": \"\\ud800\"}}").into_bytes()),
                    Just([format!("{{\"{k}\": \"").as_bytes(), b"\xff\xfe\xc0\x80", b"\"}"].concat()),
                ]
            }),
        ]
    }

    /// A good body of a route with some of its fields replaced by generated values (NULs,
    /// huge numbers, wrong types) or left out, so the values reach the handlers and SQL.
    fn mutated(template: Value) -> BoxedStrategy<Value> {
        let Value::Object(fields) = template else {
            return Just(template).boxed();
        };
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
            .into_iter()
            .map(|(key, good)| {
                let value = prop_oneof![
                    3 => Just(good),
                    1 => json(),
                    1 => text().prop_map(Value::String),
                ];
                proptest::option::weighted(0.9, value.prop_map(move |v| (key.clone(), v))).boxed()
            })
            .collect();
        fields
            .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect()))
            .boxed()
    }

    fn route_body(route: &str) -> BoxedStrategy<Vec<u8>> {
        use serde_json::json;
        let template = match route {
            "/codebases" => {
                json!({"name": "c1", "url": "https://x/c1", "branch_url": "https://x/c1",
                                   "vcs_type": "git", "subpath": "", "value": 1, "inactive": false})
            }
            "/candidates" => json!({"codebase": "alpha", "campaign": "generic", "command": "true",
                                    "value": 1, "success_chance": 0.5, "publish_policy": null,
                                    "context": null, "change_set": null}),
            "/schedule" => json!({"codebase": "alpha", "campaign": "generic", "requester": "r",
                                  "refresh": false, "offset": 0, "bucket": "manual",
                                  "estimated_duration": 10}),
            "/schedule-control" => json!({"codebase": "alpha", "requester": "r", "refresh": false,
                                          "offset": 0, "bucket": "manual",
                                          "main_branch_revision": "git-v1:abc"}),
            "/runs/run-1" => json!({"publish_status": "approved"}),
            "/active-runs" => json!({"worker_link": "https://w/", "codebase": "alpha",
                                     "campaign": "generic", "node": "n",
                                     "backchannel": {"kind": "http", "url": "http://w/"}}),
            _ => json!({}),
        };
        let one = mutated(template);
        let shaped = if matches!(route, "/codebases" | "/candidates") {
            proptest::collection::vec(one, 1..3)
                .prop_map(Value::Array)
                .boxed()
        } else {
            one
        };
        prop_oneof![
            2 => shaped.prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => body(),
        ]
        .boxed()
    }

    /// A worker's result.json, good or with generated fields.
    fn result_json() -> BoxedStrategy<Value> {
        use serde_json::json;
        mutated(json!({
            "code": "success", "description": "Fixed it", "context": {"x": 1},
            "branches": [["main", "master", "git-v1:aa", "git-v1:bb"]], "tags": [],
            "target": {"name": "generic", "details": {}}, "value": 10,
            "start_time": "2026-11-29T12:00:00Z", "finish_time": "2026-11-29T12:01:00Z",
            "codemod": {"x": 1}, "refreshed": false,
        }))
    }

    /// A multipart upload: the runner's boundary or another, parts named as the worker names
    /// them or not, result.json of any shape, sometimes cut short.
    fn multipart_body() -> impl Strategy<Value = (String, Vec<u8>)> {
        let part = (
            prop_oneof![
                Just("metadata".to_string()),
                Just("file".to_string()),
                text()
            ],
            prop_oneof![
                3 => Just(Some("result.json".to_string())),
                2 => Just(Some("worker.log".to_string())),
                1 => Just(None),
                2 => text().prop_map(Some),
            ],
            prop_oneof![
                Just("application/json".to_string()),
                Just("application/octet-stream".to_string()),
                Just("multipart/mixed; boundary=x".to_string()),
                text(),
            ],
            prop_oneof![
                3 => result_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                1 => json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                1 => body(),
            ],
        );
        (
            prop_oneof![Just(BOUNDARY.to_string()), "[a-zA-Z0-9'()+_,./:=? -]{1,70}", text()],
            proptest::collection::vec(part, 0..4),
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(boundary, parts, cut, at, header_boundary)| {
                let mut out = Vec::new();
                for (field, filename, content_type, data) in parts {
                    out.extend(format!("--{boundary}\r\n").as_bytes());
                    let disposition = match filename {
                        Some(name) => format!(
                            "Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                        ),
                        None => format!("Content-Disposition: form-data; name=\"{field}\"\r\n"),
                    };
                    out.extend(disposition.as_bytes());
                    out.extend(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
                    out.extend(data);
                    out.extend(b"\r\n");
                }
                out.extend(format!("--{boundary}--\r\n").as_bytes());
                if cut && !out.is_empty() {
                    out.truncate(at.index(out.len()));
                }
                // A header cannot carry control characters; the body still can.
                let sendable = boundary.chars().all(|c| c.is_ascii_graphic() || c == ' ');
                let header = if header_boundary || !sendable { BOUNDARY.to_string() } else { boundary };
                (format!("multipart/form-data; boundary={header}"), out)
            })
    }

    fn budget() -> (usize, Duration) {
        let cases = std::env::var("JR_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let seconds = std::env::var("JR_FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6);
        (cases, Duration::from_secs(seconds))
    }

    fn runner(seed: u8) -> TestRunner {
        TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
        )
    }

    /// Whether an answer is acceptable: not a server error (the protocol's 503 for an empty
    /// queue aside), with a JSON body when it is an error.
    fn check(route: &str, status: u16, text: &str, sent: &[u8]) {
        let shown = String::from_utf8_lossy(&sent[..sent.len().min(300)]).to_string();
        let empty_queue = status == 503 && text.contains("queue empty");
        assert!(
            status < 500 || empty_queue,
            "{route} answered {status} {text} to {shown:?}"
        );
        if status >= 400 {
            let body: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{route}: {status} not JSON ({e}): {text}"));
            assert!(body["reason"].is_string(), "{route}: {text}");
        }
    }

    /// Panics anywhere in this test binary (the server runs in it): a handler that panics
    /// drops its connection, which the client sees as no answer.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    /// Requests that got no answer the client could read. The server answers a bad upload as
    /// soon as it sees the fault, without reading the rest of the body, and closes the
    /// connection; a client still sending may then see the connection reset.
    static LOST: AtomicUsize = AtomicUsize::new(0);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generated_bodies_never_get_a_5xx() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            previous(info);
        }));
        let server = TestServer::start(Store::Postgres).await;
        sqlx::raw_sql(
            "INSERT INTO codebase (name, url, branch_url) VALUES ('alpha', 'https://x/a', 'https://x/a');
             INSERT INTO change_set (id, campaign) VALUES ('cs1', 'generic');
             INSERT INTO run (id, command, start_time, finish_time, result_code, suite,
                              logfilenames, change_set, codebase)
             VALUES ('run-1', 'x', now(), now(), 'success', 'generic', '{}', 'cs1', 'alpha');",
        )
        .execute(&server.db.pool)
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let (cases, limit) = budget();
        let routes = [
            "/codebases",
            "/candidates",
            "/schedule",
            "/schedule-control",
            "/runs/run-1",
            "/active-runs",
        ];
        let mut report = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let mut runner = runner(index as u8 + 1);
            let strategy = route_body(route);
            let started = Instant::now();
            let bodies = std::iter::from_fn(|| {
                (started.elapsed() < limit)
                    .then(|| strategy.new_tree(&mut runner).unwrap().current())
            })
            .take(cases);
            let url = server.url(route);
            let sent = futures::stream::iter(bodies)
                .map(|body| {
                    let request = client.post(&url).body(body.clone());
                    async move {
                        let Ok(response) = request.send().await else {
                            // See `lost`: a panic is counted; an answer the client could not
                            // read is allowed, within bounds.
                            LOST.fetch_add(1, Ordering::Relaxed);
                            return;
                        };
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap();
                        check(route, status, &text, &body);
                    }
                })
                .buffer_unordered(8)
                .count()
                .await;
            report.push(format!("{route}: {sent}"));
        }

        // The finish parser, on a run that is always active: when a generated upload is a
        // good one and finishes it, the requeued item is assigned again.
        let mut runner = runner(99);
        let strategy = multipart_body();
        let started = Instant::now();
        let mut run_id = assign_any(&server, 0).await;
        let mut sent = 0;
        let mut finished = 0;
        // One request at a time (each may finish the run), so it gets a longer budget.
        while sent < cases && started.elapsed() < limit * 3 {
            let (content_type, body) = strategy.new_tree(&mut runner).unwrap().current();
            let route = format!("/active-runs/{run_id}/finish");
            let response = client
                .post(server.url(&route))
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await;
            sent += 1;
            let Ok(response) = response else {
                LOST.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            check(&route, status, &text, &body);
            if status == 201 {
                finished += 1;
                run_id = assign_any(&server, finished).await;
            }
        }
        report.push(format!("finish: {sent} ({finished} finished a run)"));
        let lost = LOST.load(Ordering::Relaxed);
        eprintln!(
            "generated bodies per route: {}; answers the client could not read: {lost}",
            report.join(", ")
        );
        assert_eq!(
            PANICS.load(Ordering::Relaxed),
            0,
            "a handler panicked (see above)"
        );
        assert!(lost < 50, "{lost} requests got no answer");
        let metrics = server.state.metrics.render();
        assert!(!metrics.contains("status=\"500"), "{metrics}");
        server.stop().await;
    }

    /// An active run: a queued item of a codebase of its own (`fuzzed-<n>`), assigned.
    async fn assign_any(server: &TestServer, n: usize) -> String {
        common::sql(
            server,
            &format!(
                "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
                     ('fuzzed-{n}', 'https://x/f{n}', 'https://x/f{n}', 'git', '');
                 INSERT INTO queue (codebase, suite, command) VALUES
                     ('fuzzed-{n}', 'generic', 'true');"
            ),
        )
        .await;
        let response = reqwest::Client::new()
            .post(server.url("/active-runs"))
            .json(&serde_json::json!({"codebase": format!("fuzzed-{n}")}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}
