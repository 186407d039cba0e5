//! Routes of the public worker app. Credentials are checked before anything else.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::error::ApiError;
use super::extract::OptionalJsonObject;
use super::internal::assignment_response;
use crate::app::SharedState;
use crate::assign::{self, AssignRequest, Mode};

use crate::worker_auth::authenticate;

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

/// The authenticated worker's login, or a 401 asking for Basic credentials.
async fn require_worker(
    state: &SharedState,
    authorization: Option<String>,
) -> Result<String, Response> {
    match authenticate(&state.pool, authorization.as_deref()).await {
        Ok(Ok(login)) => Ok(login),
        Ok(Err(error)) => {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic Realm=\"Janitor\""),
            );
            Err(response)
        }
        Err(error) => Err(ApiError::from(error).into_response()),
    }
}

async fn assign_run(State(state): State<SharedState>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let worker = match require_worker(&state, authorization).await {
        Ok(worker) => worker,
        Err(response) => return response,
    };
    let outcome = async {
        let OptionalJsonObject(body) = <OptionalJsonObject as axum::extract::FromRequest<
            SharedState,
        >>::from_request(request, &state)
        .await?;
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
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn finish(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
    request: Request,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Err(response) = require_worker(&state, authorization).await {
        return response;
    }
    super::finish_run(&state, &run_id, request).await
}
