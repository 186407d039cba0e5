//! The two HTTP faces of the runner: the internal app (site, publisher, operators, trusted
//! workers) and the public worker app. Handlers parse, call one service, and map the error.

mod error;
mod extract;
mod internal;
mod observe;
mod public;
mod responses;
mod upload;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::net::TcpListener;

use crate::app::SharedState;

pub use error::{ApiError, ApiResult};

/// Receives a finish upload for `run_id` and finishes the run. 404 before the body is read.
async fn finish_run(
    state: &SharedState,
    run_id: &str,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let outcome = async {
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > state.settings.max_upload_size as u64) {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "upload too large",
            ));
        }
        let finished = match crate::finish::registered_run(state, run_id).await {
            Ok(registered) => {
                let upload = upload::receive(request, state, &state.upload_memory).await?;
                crate::finish::finish_upload(state, run_id, &registered, upload).await
            }
            Err(error) => Err(error),
        };
        match finished {
            Ok(finished) => Ok((
                axum::http::StatusCode::CREATED,
                axum::Json(finished.to_json()),
            )
                .into_response()),
            // The reason is the exception text, which in Python is just the id.
            Err(crate::Error::RunExists(id)) => Ok((
                axum::http::StatusCode::CONFLICT,
                axum::Json(responses::RunExists {
                    id: &id,
                    reason: &id,
                }),
            )
                .into_response()),
            Err(other) => Err(ApiError::from(other)),
        }
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// Routes that answer before the database is ready: the probes and the metrics.
const ANSWERED_WITHOUT_DATABASE: [&str; 4] = ["/", "/health", "/ready", "/metrics"];
/// Routes that read only the active-run store.
const ANSWERED_FROM_STORE: [&str; 3] = ["/status", "/active-runs", "/active-runs/{run_id}"];

/// 503 with the reason for every other route while the database is not reachable and
/// migrated yet (a server started before its database).
async fn require_database(
    axum::extract::State(state): axum::extract::State<SharedState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    let exempt = route.is_some_and(|path| {
        ANSWERED_WITHOUT_DATABASE.contains(&path)
            // Without any database, what the active-run store alone knows is still served.
            || (state.database.is_absent()
                && request.method() == axum::http::Method::GET
                && ANSWERED_FROM_STORE.contains(&path))
    });
    match state.database.waiting_for() {
        Some(reason) if !exempt => axum::response::IntoResponse::into_response(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            reason,
        )),
        _ => next.run(request).await,
    }
}

/// The internal app (`--port`, default 9911).
pub fn internal_router(state: SharedState) -> Router {
    app(internal::routes(state.settings.max_upload_size), state)
}

/// The public worker app (`--public-port`, default 9919).
pub fn public_router(state: SharedState) -> Router {
    app(public::routes(state.settings.max_upload_size), state)
}

/// Either app around its routes: JSON 404s, the JSON body limit, 503 while the database is not
/// ready, request metrics, a span per request, and every error as JSON.
fn app(routes: Router<SharedState>, state: SharedState) -> Router {
    routes
        .fallback(observe::not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_json_body))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_database,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            observe::track,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(observe::request_span)
                .on_request(())
                .on_response(observe::record_status)
                .on_failure(()),
        )
        .layer(middleware::map_response(observe::json_errors))
        .with_state(state)
}

/// Listeners bound before serving, so callers know the real ports (port 0 picks one).
pub struct Listeners {
    /// The internal app's socket.
    pub internal: TcpListener,
    /// The public (worker) app's socket; `None` when disabled.
    pub public: Option<TcpListener>,
}

impl Listeners {
    /// Binds the internal app, and the public one when given an address.
    pub async fn bind(internal: SocketAddr, public: Option<SocketAddr>) -> std::io::Result<Self> {
        let internal = TcpListener::bind(internal).await?;
        let public = match public {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self { internal, public })
    }

    /// The address the internal app listens on.
    pub fn internal_addr(&self) -> std::io::Result<SocketAddr> {
        self.internal.local_addr()
    }

    /// The address the public app listens on, if it has a socket.
    pub fn public_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.public.as_ref().map(TcpListener::local_addr)
    }
}

/// Serves both apps until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    state: SharedState,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let internal = axum::serve(listeners.internal, internal_router(state.clone()))
        .with_graceful_shutdown(wait(stop_rx.clone()));
    let public = listeners.public.map(|listener| {
        axum::serve(listener, public_router(state.clone()))
            .with_graceful_shutdown(wait(stop_rx.clone()))
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let served = match public {
        Some(public) => {
            let (a, b) = tokio::join!(internal.into_future(), public.into_future());
            a.and(b)
        }
        None => internal.await,
    };
    // The last requests' changes reach the store's copy before the process goes (a Redis
    // that does not answer is not waited for long: the next process's reconciliation
    // catches up).
    if tokio::time::timeout(SETTLE_AT_SHUTDOWN, state.store.settle())
        .await
        .is_err()
    {
        tracing::warn!("the active-run store's copy was not up to date at shutdown");
    }
    served
}

/// How long a stopping server waits for the active-run store's copy to catch up.
const SETTLE_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);
