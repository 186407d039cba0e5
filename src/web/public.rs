//! Routes of the public worker app. Credentials are checked before anything else.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};

use super::error::ApiError;
use super::extract::{AuthenticatedWorker, OptionalJsonObject};
use super::internal::assignment_response;
use crate::app::SharedState;
use crate::assign::{self, AssignRequest, Mode};

pub fn routes(max_upload_size: usize) -> axum::Router<SharedState> {
    axum::Router::new()
        .route("/", get(root))
        .route("/runner/active-runs", post(assign_run))
        .route(
            "/runner/active-runs/{run_id}",
            get(super::internal::get_active_run),
        )
        .route(
            "/runner/active-runs/{run_id}/finish",
            post(finish).layer(axum::extract::DefaultBodyLimit::max(max_upload_size)),
        )
}

async fn root() -> &'static str {
    ""
}

async fn assign_run(
    State(state): State<SharedState>,
    AuthenticatedWorker(worker): AuthenticatedWorker,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<Response, ApiError> {
    let mut assign_request = AssignRequest::from_json(&body)?;
    assign_request.worker = Some(worker.clone());
    state
        .metrics
        .assignments
        .with_label_values(&[worker.as_str()])
        .inc();
    assignment_response(
        &state,
        assign::assign(&state, &assign_request, Mode::Assign).await,
        "/runner/active-runs",
    )
}

async fn finish(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
    _: AuthenticatedWorker,
    request: Request,
) -> Response {
    super::finish_run(&state, &run_id, request).await
}
