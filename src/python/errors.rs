//! The Python face's whole error mapping: the Python runner's exceptions, under its names,
//! and the Python exception each error of the library is raised as.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyAssertionError, PyConnectionError, PyException, PyFileNotFoundError, PyKeyError,
    PyNotImplementedError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use crate::backchannel::BackchannelError;
use crate::review::ReviewError;
use crate::schedule::engine::ScheduleError;

// The exceptions of the Python runner, with its names, so `except` clauses keep working; all
// but ModelError (a ValueError, as bad input is in Python) share the base RunnerError.
create_exception!(janitor_runner, RunnerError, PyException);
create_exception!(janitor_runner, QueueItemAlreadyClaimed, RunnerError);
create_exception!(janitor_runner, RunExists, RunnerError);
create_exception!(janitor_runner, CandidateUnavailable, RunnerError);
create_exception!(janitor_runner, QueueEmpty, RunnerError);
create_exception!(janitor_runner, QueueRateLimiting, RunnerError);
// Every codebase value is 0, so none can be normalised (Python: asyncpg's DivisionByZeroError
// from the SQL; DECISIONS.md asks for a typed error).
create_exception!(janitor_runner, ZeroMaximumValue, RunnerError);
create_exception!(janitor_runner, ModelError, PyValueError);

/// The ping exception classes, defined in Python so that they are plain `RunnerError` subclasses
/// with a `reason` attribute, as the Python runner's are (an abi3 extension cannot subclass
/// `Exception` from Rust before Python 3.12).
const PING_EXCEPTIONS: &std::ffi::CStr = cr#"
class PingFailure(RunnerError):
    """Failure to ping the job."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class PingTimeout(PingFailure):
    """Timeout while pinging job."""


class PingFatalFailure(PingFailure):
    """Failure to ping the job that's not retriable."""


for _cls in (PingFailure, PingTimeout, PingFatalFailure):
    _cls.__module__ = "janitor_runner"
del _cls
"#;

/// Adds the ping exception classes to the module.
pub(super) fn add_ping_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let namespace = PyDict::new(py);
    namespace.set_item("RunnerError", py.get_type::<RunnerError>())?;
    py.run(PING_EXCEPTIONS, Some(&namespace), None)?;
    for name in ["PingFailure", "PingTimeout", "PingFatalFailure"] {
        let class = namespace
            .get_item(name)?
            .ok_or_else(|| PyRuntimeError::new_err(format!("{name} was not defined")))?;
        module.add(name, class)?;
    }
    Ok(())
}

fn exception(py: Python<'_>, name: &'static str, reason: String) -> PyErr {
    static FAILURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static FATAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let cell = match name {
        "PingTimeout" => &TIMEOUT,
        "PingFatalFailure" => &FATAL,
        _ => &FAILURE,
    };
    match cell
        .import(py, "janitor_runner._native", name)
        .and_then(|class| class.call1((reason,)))
    {
        Ok(instance) => PyErr::from_value(instance),
        Err(error) => error,
    }
}

/// The Python exception for a backchannel error. A ping raises the ping exceptions; the
/// other calls raise `ConnectionError` when the worker cannot be asked.
pub(super) fn backchannel_error(error: BackchannelError, ping: bool) -> PyErr {
    match error {
        BackchannelError::NotImplemented(what) => {
            PyNotImplementedError::new_err(format!("{what} not supported for this type of run"))
        }
        BackchannelError::NoSuchLogFile(name) => PyFileNotFoundError::new_err(name),
        BackchannelError::Timeout(reason) if ping => {
            Python::attach(|py| exception(py, "PingTimeout", reason))
        }
        BackchannelError::Fatal(reason) if ping => {
            Python::attach(|py| exception(py, "PingFatalFailure", reason))
        }
        BackchannelError::Failure(reason) if ping => {
            Python::attach(|py| exception(py, "PingFailure", reason))
        }
        BackchannelError::Timeout(reason)
        | BackchannelError::Failure(reason)
        | BackchannelError::Fatal(reason) => PyConnectionError::new_err(reason),
    }
}

/// The Python exception for a service error: the runner's own exception names where the
/// Python runner has one, ValueError for bad input, KeyError for unknown things.
pub(super) fn service_error(error: crate::error::Error) -> PyErr {
    use crate::error::Error;
    use crate::state::StoreError;
    match error {
        Error::RunExists(id) | Error::Store(StoreError::RunExists(id)) => RunExists::new_err(id),
        Error::Store(StoreError::AlreadyClaimed { queue_id, run_id }) => {
            QueueItemAlreadyClaimed::new_err((queue_id, run_id))
        }
        Error::BadRequest(message) | Error::Conflict(message) => PyValueError::new_err(message),
        Error::NotFound(message) => PyKeyError::new_err(message),
        Error::Storage(message) => PyOSError::new_err(message),
        Error::Backchannel(error) => backchannel_error(error, false),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

pub(super) fn model_error(error: crate::models::ModelError) -> PyErr {
    ModelError::new_err(error.0)
}

pub(super) fn database_error(error: sqlx::Error) -> PyErr {
    PyRuntimeError::new_err(format!("database error: {error}"))
}

/// The Python exception for each way scheduling can fail, as the Python code raised it.
pub(super) fn schedule_error(error: ScheduleError) -> PyErr {
    match error {
        ScheduleError::CandidateUnavailable { campaign, codebase } => {
            CandidateUnavailable::new_err((campaign, codebase))
        }
        ScheduleError::ZeroMaximumValue => ZeroMaximumValue::new_err(error.to_string()),
        ScheduleError::Offset { .. } => PyAssertionError::new_err(error.to_string()),
        ScheduleError::Database(error) => database_error(error),
    }
}

/// The Python exception for each way storing a review can fail.
pub(super) fn review_error(error: ReviewError) -> PyErr {
    match error {
        ReviewError::UnknownVerdict(_) => PyValueError::new_err(error.to_string()),
        ReviewError::UnknownRun(_) => PyKeyError::new_err(error.to_string()),
        ReviewError::Schedule(error) => schedule_error(error),
        ReviewError::Database(error) => database_error(error),
        ReviewError::Runner { .. } => PyRuntimeError::new_err(error.to_string()),
    }
}
