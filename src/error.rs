//! The error every service returns. The web and Python faces map it to a status code and
//! a JSON reason, or to an exception.

use crate::backchannel::BackchannelError;
use crate::state::StoreError;

/// What went wrong in a service of the runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something invalid (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked about does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A run with this id is already stored.
    #[error("{0}")]
    RunExists(String),
    /// Logs or artifacts could not be written (HTTP 503: the worker retries).
    #[error("storage error: {0}")]
    Storage(String),
    /// A PostgreSQL query failed (HTTP 400 for input it cannot hold, 503 when it is unavailable
    /// or out of resources, else 500).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The active-run store (PostgreSQL or Redis) failed (HTTP 503, or as for `Database`).
    #[error("active-run store error: {0}")]
    Store(#[from] StoreError),
    /// The run's worker could not be asked (HTTP 501, 404 or 502).
    #[error(transparent)]
    Backchannel(#[from] BackchannelError),
}

impl Error {
    /// A [`Error::BadRequest`] with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// A [`Error::NotFound`] with this message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
}

/// The runner's result type, failing with [`Error`] unless told otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;
