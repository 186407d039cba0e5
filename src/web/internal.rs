//! Routes of the internal app.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, JsonObject, OptionalJsonObject};
use super::responses::{CandidateEntry, CandidateUpload, Empty, RateLimited, RunSummary};
use crate::app::{AppState, SharedState};
use crate::assign::{self, AssignError, AssignRequest, Assignment, Mode};
use crate::metrics::Metrics;
use crate::{backchannel, candidate, codebase, db, queue, runs, status};

pub fn routes(max_upload_size: usize) -> axum::Router<SharedState> {
    axum::Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(get_status))
        .route("/queue", get(get_queue))
        .route("/queue/position", get(get_queue_position))
        .route("/codebases", get(download_codebases).post(upload_codebases))
        .route(
            "/candidates",
            get(download_candidates).post(upload_candidates),
        )
        .route("/candidates/{id}", delete(delete_candidate))
        .route("/schedule", post(schedule))
        .route("/schedule-control", post(schedule_control))
        .route("/runs/{run_id}", get(get_run).post(update_run))
        .route("/active-runs", get(get_active_runs).post(assign_run))
        .route("/active-runs/+peek", get(peek))
        .route("/active-runs/{run_id}", get(get_active_run))
        .route(
            "/active-runs/{run_id}/finish",
            axum::routing::post(finish)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_size)),
        )
        .route("/log/{run_id}", get(log_index))
        .route("/log/{run_id}/{filename}", get(log_file))
        .route("/kill/{run_id}", post(kill))
}

async fn health() -> &'static str {
    "ok"
}

/// 200 once the database is reachable and migrated; until then 503 with what it waits for.
async fn ready(State(state): State<SharedState>) -> ApiResult<&'static str> {
    match state.database.waiting_for() {
        // Created without a database: nothing is awaited.
        None => Ok("ok"),
        Some(_) if state.database.is_absent() => Ok("ok"),
        Some(reason) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            reason,
        )),
    }
}

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    crate::registry::refresh_scraped_gauges(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn get_status(State(state): State<SharedState>) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    Ok(Json(crate::registry::status_json(&state, now).await?))
}

async fn get_queue(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<queue::QueueListing>>> {
    let limit = match query.get("limit") {
        None => None,
        Some(text) => Some(text.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("limit must be an integer, not {text:?}"))
        })?),
    };
    Ok(Json(queue::list(&state.pool, limit).await?))
}

async fn get_queue_position(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<queue::Position>> {
    let required = |key: &str| {
        query
            .get(key)
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter {key:?}")))
    };
    let codebase = required("codebase")?;
    let campaign = required("campaign")?;
    Ok(Json(
        queue::position(
            &state.pool,
            &state.queue_positions,
            state.store.as_ref(),
            codebase,
            campaign,
        )
        .await?,
    ))
}

async fn download_codebases(
    State(state): State<SharedState>,
) -> ApiResult<Json<Vec<db::codebases::Codebase>>> {
    Ok(Json(
        db::codebases::list_all(&state.pool)
            .await
            .map_err(crate::Error::from)?,
    ))
}

async fn upload_codebases(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Empty>> {
    codebase::upload(&state.pool, &body).await?;
    Ok(Json(Empty {}))
}

async fn download_candidates(
    State(state): State<SharedState>,
) -> ApiResult<Json<Vec<CandidateEntry>>> {
    let candidates = db::candidates::list_all(&state.pool)
        .await
        .map_err(crate::Error::from)?;
    Ok(Json(candidates.into_iter().map(Into::into).collect()))
}

async fn upload_candidates(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody,
) -> ApiResult<axum::response::Response> {
    let report = candidate::upload(&state.pool, &state.config, &body, state.clock.now()).await?;
    Ok(Json(CandidateUpload::from(&report)).into_response())
}

async fn schedule(
    State(state): State<SharedState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        crate::schedule::manual::schedule(&state.pool, &state.config, &body).await?,
    ))
}

async fn schedule_control(
    State(state): State<SharedState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        crate::schedule::manual::schedule_control(&state.pool, &body).await?,
    ))
}

async fn delete_candidate(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Empty>> {
    let id: i32 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("candidate id must be an integer, not {id:?}"))
    })?;
    candidate::delete(&state.pool, id).await?;
    Ok(Json(Empty {}))
}

async fn get_run(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunSummary>> {
    Ok(Json(runs::get(&state.pool, &run_id).await?.into()))
}

async fn update_run(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let status = match body.get("publish_status") {
        Some(Value::String(status)) => status,
        Some(_) => return Err(ApiError::bad_request("publish_status must be a string")),
        None => return Err(ApiError::bad_request("missing key \"publish_status\"")),
    };
    Ok(Json(
        runs::set_publish_status(&state.pool, &state.events, &run_id, status).await?,
    ))
}

async fn get_active_runs(State(state): State<SharedState>) -> ApiResult<Json<Vec<Value>>> {
    let now = state.clock.now();
    Ok(Json(
        status::processing(
            state.store.as_ref(),
            state.settings.run_timeout_minutes,
            now,
        )
        .await?,
    ))
}

pub(super) async fn get_active_run(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    status::active_run(state.store.as_ref(), &run_id, now)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no such run {run_id}")))
}

async fn assign_run(
    State(state): State<SharedState>,
    OptionalJsonObject(body): OptionalJsonObject,
) -> ApiResult<axum::response::Response> {
    let request = AssignRequest::from_json(&body)?;
    state
        .metrics
        .assignments
        .with_label_values(&[Metrics::label(request.worker.as_deref())])
        .inc();
    assignment_response(
        &state,
        assign::assign(&state, &request, Mode::Assign).await,
        "/active-runs",
    )
}

async fn peek(State(state): State<SharedState>) -> ApiResult<axum::response::Response> {
    let request = AssignRequest::default();
    assignment_response(
        &state,
        assign::assign(&state, &request, Mode::Peek).await,
        "/active-runs",
    )
}

/// 201 with the assignment and a `Location` under `prefix`; 503 `queue empty`; 429 with
/// `Retry-After` when the item's forge or the VCS store is rate limiting us.
pub(super) fn assignment_response(
    state: &AppState,
    outcome: Result<Assignment, AssignError>,
    prefix: &str,
) -> ApiResult<axum::response::Response> {
    match outcome {
        Ok(assignment) => {
            let location = format!("{prefix}/{}", assignment.run.log_id);
            Ok((
                axum::http::StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(assignment.json),
            )
                .into_response())
        }
        Err(AssignError::QueueEmpty) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "queue empty",
        )),
        Err(error @ AssignError::NoVcsLocation) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            error.to_string(),
        )),
        Err(AssignError::RateLimited { limited, until }) => {
            let seconds = (until - state.clock.now()).num_seconds().max(0);
            let retry_after = seconds.to_string();
            Ok((
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after)],
                Json(RateLimited {
                    reason: limited.to_string(),
                    host: &limited.host,
                    retry_after: seconds,
                }),
            )
                .into_response())
        }
        Err(AssignError::Failed(error)) => Err(error.into()),
    }
}

async fn finish(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let mut response = super::finish_run(&state, &run_id, request).await;
    if response.status() == axum::http::StatusCode::CREATED
        && let Ok(location) = axum::http::HeaderValue::from_str(&format!("/runs/{run_id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn log_index(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(backchannel::list_run_logs(&state, &run_id).await?))
}

/// The log streamed from the worker as it arrives, as `text/plain`.
async fn log_file(
    State(state): State<SharedState>,
    Path((run_id, filename)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let stream = backchannel::open_run_log(&state, &run_id, &filename).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

async fn kill(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(backchannel::kill_run(&state, &run_id).await?))
}
