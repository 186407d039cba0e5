//! Errors as HTTP responses: a status code and a JSON `{"reason": ...}` body, always.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::backchannel::BackchannelError;
use crate::error::Error;
use crate::state::StoreError;

/// Marks responses that failed because PostgreSQL ran out of resources (SQLSTATE class 53),
/// so the metrics layer can count them.
#[derive(Debug, Clone, Copy)]
pub struct InsufficientResources;

/// Marks responses to requests whose connection broke while the request was being read (the
/// client went away mid-upload), so the metrics layer can count them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionReset;

/// An error answered as a status code and a JSON `{"reason": ...}` body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// The `reason` of the body.
    pub reason: String,
    insufficient_resources: bool,
    connection_reset: bool,
}

impl ApiError {
    /// An error answered with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            insufficient_resources: false,
            connection_reset: false,
        }
    }

    /// A 400 for a request whose connection broke while it was being read.
    pub fn connection_reset(reason: impl Into<String>) -> Self {
        Self {
            connection_reset: true,
            ..Self::bad_request(reason)
        }
    }

    /// A 400 Bad Request.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// A 404 Not Found.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    fn from_database(error: &sqlx::Error) -> Self {
        if crate::db::is_insufficient_resources(error) {
            let mut api = Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string());
            api.insufficient_resources = true;
            return api;
        }
        if crate::db::is_invalid_input(error) {
            // The request carried a value PostgreSQL cannot hold (a NUL byte in text or a
            // JSON string, a number out of range): the client's fault, and nothing was written.
            let message = match error {
                sqlx::Error::Database(db) => db.message().to_string(),
                other => other.to_string(),
            };
            return Self::bad_request(format!("invalid input: {message}"));
        }
        if crate::db::is_unavailable(error) {
            tracing::error!(%error, "database unavailable");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
        tracing::error!(%error, "database error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal database error")
    }
}

impl ApiError {
    /// 501 for what the run's backchannel cannot do, 404 for a log the worker does not have,
    /// 502 when the worker fails or cannot be reached (DECISIONS.md 5).
    fn from_backchannel(error: &BackchannelError) -> Self {
        let status = match &error {
            BackchannelError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            BackchannelError::NoSuchLogFile(_) => StatusCode::NOT_FOUND,
            BackchannelError::Timeout(_)
            | BackchannelError::Failure(_)
            | BackchannelError::Fatal(_) => {
                tracing::warn!(%error, "worker backchannel failed");
                StatusCode::BAD_GATEWAY
            }
        };
        Self::new(status, error.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::BadRequest(reason) => Self::new(StatusCode::BAD_REQUEST, reason),
            Error::NotFound(reason) => Self::new(StatusCode::NOT_FOUND, reason),
            Error::Conflict(reason) => Self::new(StatusCode::CONFLICT, reason),
            Error::RunExists(id) => Self::new(StatusCode::CONFLICT, id),
            Error::Storage(reason) => {
                tracing::error!(%reason, "storage failure");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, reason)
            }
            Error::Database(db) | Error::Store(StoreError::Database(db)) => {
                Self::from_database(&db)
            }
            Error::Backchannel(error) => Self::from_backchannel(&error),
            Error::Store(store) => {
                tracing::error!(error = %store, "active-run store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "active-run store unavailable",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Error::Store(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(super::responses::Reason {
                reason: &self.reason,
            }),
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if self.insufficient_resources {
            response.extensions_mut().insert(InsufficientResources);
        }
        if self.connection_reset {
            response.extensions_mut().insert(ConnectionReset);
        }
        response
    }
}

/// What a handler returns: its response, or an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;
