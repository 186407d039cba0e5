//! The PyO3 face: `janitor_runner._native`, re-exported by the `janitor_runner` package.
//! Functions here are thin wrappers over the library, named as in the Python runner.

// PyO3 hands arguments over as owned values it has extracted from Python objects.
#![allow(clippy::needless_pass_by_value)]

use chrono::NaiveDateTime;
use pyo3::prelude::*;
use serde_json::Value;

use errors::ModelError;

mod backchannel;
mod errors;
mod helpers;
mod models;
mod processor;
mod queue;
mod runs;
mod scheduling;
mod server;

/// A Python object (dict, list, str, ...) as JSON, through Python's own `json` module, so
/// anything `json.dumps` accepts is accepted and the same things are refused.
fn to_json_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let text: String = if let Ok(text) = obj.extract::<String>() {
        text
    } else {
        let json = obj.py().import("json")?;
        json.call_method1("dumps", (obj,))?.extract()?
    };
    serde_json::from_str(&text).map_err(|e| ModelError::new_err(e.to_string()))
}

/// JSON as the Python objects `json.loads` gives.
fn from_json_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import("json")?;
    json.call_method1("loads", (value.to_string(),))
}

/// `future_into_py` for futures that return nothing: Python gets `None`, not the empty tuple
/// a Rust `()` converts to.
fn awaitable_none<'py, F>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = PyResult<()>> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        future.await?;
        // The closure is needed: `Python::None` is not general over the attach lifetime.
        #[allow(clippy::redundant_closure_for_method_calls)]
        Ok(Python::attach(|py| py.None()))
    })
}

/// The items of any iterable (set, list, tuple, ...), each extracted as `T`.
fn collect_iterable<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Vec<T>> {
    match obj {
        None => Ok(Vec::new()),
        Some(obj) if obj.is_none() => Ok(Vec::new()),
        Some(obj) => obj
            .try_iter()?
            .map(|item| item?.extract::<T>().map_err(Into::into))
            .collect(),
    }
}

/// `now` as given, or the current UTC time (what the Python models use).
fn now_or_utc(now: Option<NaiveDateTime>) -> NaiveDateTime {
    now.unwrap_or_else(|| crate::clock::Clock::now(&crate::clock::SystemClock))
}

/// A Python value as JSON, where a `str` is a string (not JSON text, as for `to_json_value`).
fn any_to_json(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    match obj {
        None => Ok(Value::Null),
        Some(obj) if obj.is_none() => Ok(Value::Null),
        Some(obj) => match obj.extract::<String>() {
            Ok(text) => Ok(Value::String(text)),
            Err(_) => to_json_value(obj),
        },
    }
}

// Without a doc comment: it would become the module's `__doc__`, which stays empty.
#[pymodule]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::backchannel::{PyBackchannel, PyJenkinsBackchannel, PyPollingBackchannel};
    #[pymodule_export]
    use super::errors::{
        CandidateUnavailable, ModelError, QueueEmpty, QueueItemAlreadyClaimed, QueueRateLimiting,
        RunExists, RunnerError, ZeroMaximumValue,
    };
    #[pymodule_export]
    use super::helpers::{committer_env, dpkg_vendor, is_log_filename, splitout_env};
    #[pymodule_export]
    use super::models::{PyActiveRun, PyJanitorResult, PyResumeInfo, PyWorkerResult};
    #[pymodule_export]
    use super::processor::{PyQueueProcessor, PyWatchdogTask};
    #[pymodule_export]
    use super::queue::{AsyncRows, PyQueue, PyQueueItem, vcs_info_json};
    #[pymodule_export]
    use super::runs::{store_change_set, store_review, store_run};
    #[pymodule_export]
    use super::scheduling::{
        PyPool, connect, py_bulk_schedule, py_calculate_offset, py_do_schedule,
        py_do_schedule_control, py_do_schedule_regular, py_estimate_duration,
        py_estimate_success_probability_and_duration,
    };
    #[pymodule_export]
    use super::server::{PyServer, create_app, migrate, serve, start_server};

    /// `__version__`, and the exceptions defined in Python, which the macro cannot export.
    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::VERSION)?;
        super::errors::add_ping_exceptions(m)
    }
}
