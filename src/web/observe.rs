//! Cross-cutting request handling: request metrics, and JSON bodies for the errors the
//! framework itself produces (unknown path, wrong method, bad path parameters, body too large).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ConnectionReset, InsufficientResources};
use crate::app::SharedState;

pub async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

/// Gives every error response without a JSON body a `{"reason": ...}` one.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut fresh = ApiError::new(status, reason).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// The span of one request, named after its route (the Python's route names), a child of the
/// caller's trace when the request carries one. `/metrics` is not traced, as in the Python.
pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let method = request.method();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unknown".to_string(), |p| route_name(method, p.as_str()));
    if route == "metrics" {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::propagation::continue_trace(&span, request.headers());
    span
}

/// Records the answer's status on the request's span.
pub fn record_status(response: &Response, latency: std::time::Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
    tracing::debug!(
        parent: span,
        status = response.status().as_u16(),
        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        "answered"
    );
}

/// The Python runner's route names, used as the `route` label.
fn route_name(method: &Method, path: &str) -> String {
    let name = match (method.as_str(), path) {
        (_, "/health") => "health",
        (_, "/ready") => "ready",
        (_, "/metrics") => "metrics",
        (_, "/status") => "status",
        (_, "/queue") => "queue",
        (_, "/queue/position") => "queue-position",
        (_, "/schedule") => "schedule",
        (_, "/schedule-control") => "schedule-control",
        ("POST", "/codebases") => "upload-codebases",
        (_, "/codebases") => "download-codebases",
        ("POST", "/candidates") => "upload-candidates",
        (_, "/candidates") => "download-candidates",
        (_, "/candidates/{id}") => "delete-candidate",
        ("POST", "/runs/{run_id}") => "update-run",
        (_, "/runs/{run_id}") => "get-run",
        ("POST", "/active-runs") => "assign",
        (_, "/active-runs") => "get-active-runs",
        (_, "/active-runs/+peek") => "peek",
        (_, "/active-runs/{run_id}" | "/runner/active-runs/{run_id}") => "get-active-run",
        (_, "/active-runs/{run_id}/finish") => "finish",
        (_, "/log/{run_id}") => "log-index",
        (_, "/log/{run_id}/{filename}") => "log",
        (_, "/kill/{run_id}") => "kill",
        // The rest of the public app: the Python names only `get-active-run` (above); these
        // get names of the same style rather than its "None", so they stay apart.
        (_, "/") => "public-root",
        (_, "/runner/active-runs") => "public-assign",
        (_, "/runner/active-runs/{run_id}/finish") => "public-finish",
        (_, other) => other,
    };
    name.to_string()
}

/// A request being answered: counted in progress until dropped, and counted as cancelled if
/// dropped before the answer was ready (the client went away and the server stopped the
/// handler).
struct InFlight {
    in_progress: prometheus::Gauge,
    cancelled: Option<prometheus::IntCounter>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_progress.dec();
        if let Some(cancelled) = &self.cancelled {
            cancelled.inc();
        }
    }
}

/// Counts and times every request.
pub async fn track(
    State(state): State<SharedState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || "unknown".to_string(),
        |p| route_name(&method, p.as_str()),
    );
    let metrics = &state.metrics;
    let labels = [method.as_str(), route.as_str()];
    let mut in_flight = InFlight {
        in_progress: metrics.requests_in_progress.with_label_values(&labels),
        cancelled: Some(metrics.requests_cancelled.with_label_values(&labels)),
    };
    in_flight.in_progress.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    in_flight.cancelled = None;
    drop(in_flight);
    metrics
        .request_latency_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        metrics.request_exceptions.with_label_values(&labels).inc();
    }
    if response.extensions().get::<ConnectionReset>().is_some() {
        metrics
            .requests_connection_reset
            .with_label_values(&labels)
            .inc();
    }
    if response
        .extensions()
        .get::<InsufficientResources>()
        .is_some()
    {
        metrics.postgres_insufficient_resources.inc();
    }
    response
}
