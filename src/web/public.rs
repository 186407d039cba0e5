//! Routes of the public worker app.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use crate::app::SharedState;
use crate::status;

pub fn routes() -> axum::Router<SharedState> {
    axum::Router::new()
        .route("/", get(root))
        .route("/runner/active-runs/{run_id}", get(get_active_run))
}

async fn root() -> &'static str {
    ""
}

async fn get_active_run(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    status::active_run(state.store.as_ref(), &run_id, now)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no such run {run_id}")))
}
