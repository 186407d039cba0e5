//! The PyO3 face: `janitor_runner._native`, re-exported by the `janitor_runner` package.
//! Functions here are thin wrappers over the library, named as in the Python runner.

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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(helpers::committer_env, m)?)?;
    m.add_function(wrap_pyfunction!(helpers::is_log_filename, m)?)?;
    m.add_function(wrap_pyfunction!(helpers::splitout_env, m)?)?;
    m.add_function(wrap_pyfunction!(helpers::dpkg_vendor, m)?)?;
    m.add_class::<models::PyActiveRun>()?;
    m.add_class::<models::PyWorkerResult>()?;
    m.add_class::<models::PyJanitorResult>()?;
    m.add_class::<models::PyResumeInfo>()?;
    m.add_class::<backchannel::PyBackchannel>()?;
    m.add_class::<backchannel::PyPollingBackchannel>()?;
    m.add_class::<backchannel::PyJenkinsBackchannel>()?;
    errors::add_ping_exceptions(m)?;
    m.add_class::<scheduling::PyPool>()?;
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<queue::PyQueueItem>()?;
    m.add_class::<queue::AsyncRows>()?;
    m.add_class::<processor::PyQueueProcessor>()?;
    m.add_class::<processor::PyWatchdogTask>()?;
    m.add_class::<server::PyServer>()?;
    m.add_function(wrap_pyfunction!(queue::vcs_info_json, m)?)?;
    m.add_function(wrap_pyfunction!(server::serve, m)?)?;
    m.add_function(wrap_pyfunction!(server::start_server, m)?)?;
    m.add_function(wrap_pyfunction!(server::create_app, m)?)?;
    m.add_function(wrap_pyfunction!(server::migrate, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_estimate_duration, m)?)?;
    m.add_function(wrap_pyfunction!(
        scheduling::py_estimate_success_probability_and_duration,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(scheduling::connect, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_bulk_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_calculate_offset, m)?)?;
    m.add_function(wrap_pyfunction!(runs::store_run, m)?)?;
    m.add_function(wrap_pyfunction!(runs::store_change_set, m)?)?;
    m.add_function(wrap_pyfunction!(runs::store_review, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule_regular, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule_control, m)?)?;
    let py = m.py();
    m.add(
        "QueueItemAlreadyClaimed",
        py.get_type::<errors::QueueItemAlreadyClaimed>(),
    )?;
    m.add("RunExists", py.get_type::<errors::RunExists>())?;
    m.add(
        "CandidateUnavailable",
        py.get_type::<errors::CandidateUnavailable>(),
    )?;
    m.add("QueueEmpty", py.get_type::<errors::QueueEmpty>())?;
    m.add(
        "QueueRateLimiting",
        py.get_type::<errors::QueueRateLimiting>(),
    )?;
    m.add("ModelError", py.get_type::<errors::ModelError>())?;
    m.add("RunnerError", py.get_type::<errors::RunnerError>())?;
    m.add(
        "ZeroMaximumValue",
        py.get_type::<errors::ZeroMaximumValue>(),
    )?;
    Ok(())
}
