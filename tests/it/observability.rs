//! What an operator watches: spans reach a Zipkin collector as one trace per caller's trace
//! context (a small collector on loopback accepts `POST /api/v2/spans`), `--gcp-logging`
//! writes one Cloud Logging JSON object per line, and every metric the shipped Grafana
//! dashboard queries is one the runner exports.

use crate::common;
use crate::common::process;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A Zipkin-compatible collector: every span posted to it, as JSON.
struct Collector {
    address: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

async fn start_collector() -> Collector {
    use axum::routing::post;
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/api/v2/spans",
        post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().extend(batch);
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}/api/v2/spans", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Collector { address, spans }
}

impl Collector {
    /// The spans of `trace_id`, once those named `names` have all arrived (10 s at most).
    async fn trace(&self, trace_id: &str, names: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Value> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|span| span["traceId"] == trace_id)
                .cloned()
                .collect();
            let has = |name: &str| spans.iter().any(|s| span_name(s) == name);
            if names.iter().all(|name| has(name)) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn span_name(span: &Value) -> String {
    span["name"].as_str().unwrap_or_default().to_lowercase()
}

fn find<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| span_name(s) == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {spans:#?}"))
}

async fn seeded_database(codebase: &str) -> common::TestDb {
    let db = common::migrated_database().await;
    sqlx::query(
        "INSERT INTO codebase (name, url, branch_url, vcs_type)
         VALUES ($1, 'http://127.0.0.1:1/x', 'http://127.0.0.1:1/x', 'git')",
    )
    .bind(codebase)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO queue (codebase, suite, command) VALUES ($1, 'generic', 'true')")
        .bind(codebase)
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// A finish upload as a worker sends it: `result.json` and a log.
fn finish_body() -> (String, Vec<u8>) {
    let boundary = "observability-boundary";
    let mut body = Vec::new();
    for (name, data) in [
        ("result.json", r#"{"code": "success", "description": "ok"}"#),
        ("worker.log", "working\n"),
    ] {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\n\r\n{data}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_holds_the_request_the_assignment_and_the_finish() {
    let collector = start_collector().await;
    let db = seeded_database("traced").await;
    let queue_id: i64 = sqlx::query_scalar("SELECT id::bigint FROM queue")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let mut runner = process::start_runner_with_args(
        &db.url,
        &config,
        None,
        &[("RUST_LOG", "info"), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[
            "--zipkin-address",
            &collector.address,
            "--trace-sample-rate",
            "1",
        ],
    );
    // The caller's trace: the worker (or a proxy before it) started it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let client = reqwest::Client::new();
    let assigned: Value = client
        .post(format!("{}/active-runs", runner.url))
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"worker": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = assigned["id"].as_str().expect("assigned").to_string();
    let (content_type, body) = finish_body();
    let finished = client
        .post(format!("{}/active-runs/{run_id}/finish", runner.url))
        .header("traceparent", &traceparent)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201, "{}", finished.text().await.unwrap());

    let spans = collector
        .trace(
            trace_id,
            &[
                "post assign",
                "assign",
                "post finish",
                "finish",
                "finish_run",
            ],
        )
        .await;
    let request = find(&spans, "post assign");
    assert_eq!(
        request["parentId"], "00f067aa0ba902b7",
        "joins the caller's span"
    );
    assert_eq!(request["tags"]["http.route"], "assign");
    assert_eq!(request["tags"]["http.response.status_code"], "201");
    let assignment = find(&spans, "assign");
    assert_eq!(assignment["parentId"], request["id"]);
    assert_eq!(assignment["tags"]["queue_id"], queue_id.to_string());
    assert_eq!(assignment["tags"]["run_id"], run_id.as_str());
    assert_eq!(assignment["tags"]["outcome"], "assigned");
    let finish = find(&spans, "finish");
    assert_eq!(finish["parentId"], find(&spans, "post finish")["id"]);
    assert_eq!(finish["tags"]["run_id"], run_id.as_str());
    assert_eq!(finish["tags"]["result_code"], "success");
    let stored = find(&spans, "finish_run");
    assert_eq!(stored["tags"]["run_id"], run_id.as_str());
    assert_eq!(stored["tags"]["result_code"], "success");
    assert!(
        spans
            .iter()
            .all(|s| s["localEndpoint"]["serviceName"] == "janitor.runner"),
        "every span is the runner's: {spans:#?}"
    );

    // A request without a trace context starts a trace of its own.
    let status = client
        .get(format!("{}/status", runner.url))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let own = loop {
        let found = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| span_name(s) == "get status")
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(Instant::now() < deadline, "no span for GET /status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(own["traceId"], trace_id);
    assert!(own.get("parentId").is_none_or(Value::is_null));
    runner.terminate();
    assert!(runner.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_endpoint_from_the_environment_receives_the_spans() {
    use axum::routing::post;
    let received = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    kept.lock().unwrap().push((content_type, body.len()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let db = common::migrated_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let mut runner = process::start_runner_with_args(
        &db.url,
        &config,
        None,
        &[
            ("RUST_LOG", "info"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        &["--trace-sample-rate", "1"],
    );
    let status = reqwest::get(format!("{}/status", runner.url))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no OTLP export arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (content_type, size) = received.lock().unwrap()[0].clone();
    assert_eq!(content_type, "application/x-protobuf");
    assert!(size > 0);
    runner.terminate();
    assert!(runner.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_logging_writes_one_json_object_per_line() {
    let db = seeded_database("logged").await;
    let dir = tempfile::tempdir().unwrap();
    let config = process::generic_config(dir.path());
    let mut runner = process::start_runner_capturing_stderr(
        &db.url,
        &config,
        &[("RUST_LOG", "info,janitor_runner=debug")],
        &["--gcp-logging"],
    );
    let client = reqwest::Client::new();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for path in ["/status", "/queue", "/no-such-route"] {
        client
            .get(format!("{}{path}", runner.url))
            .header("traceparent", traceparent)
            .send()
            .await
            .unwrap();
    }
    runner.terminate();
    assert!(runner.wait_exit(Duration::from_secs(20)).is_some());
    // The reader thread has the last lines once the pipe closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = runner.stderr.as_ref().unwrap().lock().unwrap().clone();
    assert!(lines.len() >= 3, "too few log lines: {lines:#?}");
    let records: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for record in &records {
        let severity = record["severity"].as_str().expect("severity");
        assert!(["DEBUG", "INFO", "WARNING", "ERROR"].contains(&severity));
        assert!(record["message"].is_string(), "message: {record}");
        assert!(record["time"].is_string(), "time: {record}");
    }
    let in_request: Vec<&Value> = records
        .iter()
        .filter(|r| r["logging.googleapis.com/labels"]["http.route"] == "status")
        .collect();
    assert!(
        !in_request.is_empty(),
        "no line inside GET /status: {records:#?}"
    );
    for record in in_request {
        let trace = record["logging.googleapis.com/trace"].as_str().unwrap();
        assert!(
            trace.ends_with("0af7651916cd43dd8448eb211c80319c"),
            "{record}"
        );
        assert!(record["logging.googleapis.com/spanId"].is_string());
    }
    assert!(
        records.iter().any(|r| r["message"] == "shutting down"),
        "the shutdown is logged: {records:#?}"
    );
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/grafana/janitor-runner.json"
        ))
        .expect("contrib/grafana/janitor-runner.json"),
    )
    .expect("the dashboard is JSON");
    let metrics = janitor_runner::metrics::Metrics::new().unwrap();
    let exported: std::collections::BTreeSet<&str> = metrics
        .exported_names()
        .iter()
        .map(String::as_str)
        .collect();
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() >= 8, "panels: {expressions:?}");
    let identifier = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    // Selectors, range durations and label groupings hold label names, not metrics.
    let labels = regex::Regex::new(
        r"\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
    )
    .unwrap();
    let functions = [
        "sum",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "time",
        "max",
        "min",
        "avg",
        "count",
        "topk",
        "clamp_min",
        "vector",
        "and",
        "or",
        "unless",
    ];
    let mut queried = 0;
    for expression in &expressions {
        let stripped = labels.replace_all(expression, " ");
        for name in identifier.find_iter(&stripped).map(|m| m.as_str()) {
            if functions.contains(&name) {
                continue;
            }
            assert!(
                exported.contains(name),
                "{name} (in {expression:?}) is not a metric the runner exports"
            );
            queried += 1;
        }
    }
    assert!(queried >= expressions.len(), "every panel queries a metric");
}

fn collect_expressions(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "expr" {
                    into.extend(inner.as_str().map(str::to_string));
                } else {
                    collect_expressions(inner, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_expressions(v, into)),
        _ => {}
    }
}
