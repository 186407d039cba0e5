//! The PyO3 face: `janitor_runner._native`, re-exported by the `janitor_runner` package.
//! Functions here are thin wrappers over the library, named as in the Python runner.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use serde_json::Value;

use crate::models;

mod processor;
mod queue;
mod scheduling;
mod server;

// The exceptions of the Python runner, with its names, so `except` clauses keep working.
create_exception!(janitor_runner, QueueItemAlreadyClaimed, PyException);
create_exception!(janitor_runner, RunExists, PyException);
create_exception!(janitor_runner, CandidateUnavailable, PyException);
create_exception!(janitor_runner, QueueEmpty, PyException);
create_exception!(janitor_runner, QueueRateLimiting, PyException);
create_exception!(janitor_runner, ModelError, PyValueError);

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

/// The Python exception for a service error: the runner's own exception names where the
/// Python runner has one, ValueError for bad input, KeyError for unknown things.
fn service_error(error: crate::error::Error) -> PyErr {
    use crate::error::Error;
    use crate::state::StoreError;
    match error {
        Error::RunExists(id) => RunExists::new_err(id),
        Error::Store(StoreError::AlreadyClaimed { queue_id, run_id }) => {
            QueueItemAlreadyClaimed::new_err((queue_id, run_id))
        }
        Error::Store(StoreError::RunExists(id)) => RunExists::new_err(id),
        Error::BadRequest(message) | Error::Conflict(message) => PyValueError::new_err(message),
        Error::NotFound(message) => pyo3::exceptions::PyKeyError::new_err(message),
        Error::Storage(message) => pyo3::exceptions::PyOSError::new_err(message),
        other => pyo3::exceptions::PyRuntimeError::new_err(other.to_string()),
    }
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

fn model_error(error: models::ModelError) -> PyErr {
    ModelError::new_err(error.0)
}

/// `now` as given, or the current UTC time (what the Python models use).
fn now_or_utc(now: Option<NaiveDateTime>) -> NaiveDateTime {
    now.unwrap_or_else(|| chrono::Utc::now().naive_utc())
}

/// A run in progress, as kept in the active-run store (Python `ActiveRun`).
#[pyclass(name = "ActiveRun", module = "janitor_runner", from_py_object)]
#[derive(Clone)]
struct PyActiveRun {
    inner: models::ActiveRun,
}

#[pymethods]
impl PyActiveRun {
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, js: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json_value(js)?;
        Ok(Self {
            inner: models::ActiveRun::from_json(&value).map_err(model_error)?,
        })
    }

    /// The JSON form; durations are measured up to `now` (default: the current UTC time).
    #[pyo3(signature = (now=None))]
    fn json<'py>(
        &self,
        py: Python<'py>,
        now: Option<NaiveDateTime>,
    ) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.to_json(now_or_utc(now)))
    }

    /// A new run of `queue_item` (Python `ActiveRun.from_queue_item`): a fresh UUID log id,
    /// started now. `backchannel` is the backchannel's JSON (`{"kind": "http", "url": ...}`)
    /// or None.
    #[classmethod]
    #[pyo3(signature = (queue_item, vcs_info, backchannel, worker_name, worker_link=None))]
    fn from_queue_item(
        _cls: &Bound<'_, PyType>,
        queue_item: &Bound<'_, queue::PyQueueItem>,
        vcs_info: &Bound<'_, PyAny>,
        backchannel: Option<&Bound<'_, PyAny>>,
        worker_name: Option<String>,
        worker_link: Option<String>,
    ) -> PyResult<Self> {
        let vcs_info: models::VcsInfo = serde_json::from_value(to_json_value(vcs_info)?)
            .map_err(|e| ModelError::new_err(format!("not a VcsInfo: {e}")))?;
        let backchannel = match backchannel {
            Some(js) if !js.is_none() => {
                models::BackchannelInfo::from_json(&to_json_value(js)?).map_err(model_error)?
            }
            _ => models::BackchannelInfo::None,
        };
        Ok(Self {
            inner: models::ActiveRun::from_queue_item(
                &queue_item.get().inner,
                uuid::Uuid::new_v4().to_string(),
                now_or_utc(None),
                vcs_info,
                backchannel,
                worker_name,
                worker_link,
            ),
        })
    }

    #[getter]
    fn log_id(&self) -> &str {
        &self.inner.log_id
    }

    #[getter]
    fn campaign(&self) -> &str {
        &self.inner.campaign
    }

    #[getter]
    fn queue_id(&self) -> i64 {
        self.inner.queue_id
    }

    #[getter]
    fn codebase(&self) -> Option<&str> {
        self.inner.codebase.as_deref()
    }

    fn __repr__(&self) -> String {
        format!("ActiveRun(log_id={:?})", self.inner.log_id)
    }
}

/// What a worker reported (Python `WorkerResult`).
#[pyclass(name = "WorkerResult", module = "janitor_runner")]
#[derive(Clone)]
struct PyWorkerResult {
    inner: models::WorkerResult,
}

#[pymethods]
impl PyWorkerResult {
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, js: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json_value(js)?;
        Ok(Self {
            inner: models::WorkerResult::from_json(&value).map_err(model_error)?,
        })
    }

    #[getter]
    fn code(&self) -> &str {
        &self.inner.code
    }
}

/// The stored outcome of a run (Python `JanitorResult`).
#[pyclass(name = "JanitorResult", module = "janitor_runner", from_py_object)]
#[derive(Clone)]
struct PyJanitorResult {
    inner: models::JanitorResult,
}

#[pymethods]
impl PyJanitorResult {
    /// The result of `active_run` as its worker reported it, with the uploaded log names.
    #[classmethod]
    #[pyo3(signature = (active_run, worker_result, logfilenames, now=None))]
    fn from_worker_result(
        _cls: &Bound<'_, PyType>,
        active_run: &PyActiveRun,
        worker_result: &PyWorkerResult,
        logfilenames: Vec<String>,
        now: Option<NaiveDateTime>,
    ) -> Self {
        Self {
            inner: models::JanitorResult::from_worker_result(
                &active_run.inner,
                worker_result.inner.clone(),
                logfilenames,
                now_or_utc(now),
            ),
        }
    }

    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.to_json())
    }

    #[getter]
    fn code(&self) -> &str {
        &self.inner.code
    }
}

/// Where a run resumes from (Python `ResumeInfo`).
#[pyclass(name = "ResumeInfo", module = "janitor_runner")]
#[derive(Clone)]
struct PyResumeInfo {
    inner: models::ResumeInfo,
}

#[pymethods]
impl PyResumeInfo {
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, js: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json_value(js)?;
        Ok(Self {
            inner: models::ResumeInfo::from_json(&value).map_err(model_error)?,
        })
    }

    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.to_json())
    }
}

/// `committer_env(committer)`: the VCS environment for a committer; `None` gives `{}`.
#[pyfunction]
#[pyo3(signature = (committer))]
fn committer_env(committer: Option<&str>) -> BTreeMap<String, String> {
    crate::committer_env(committer)
}

/// `is_log_filename(name)`: whether an uploaded file name is a log.
#[pyfunction]
fn is_log_filename(name: &str) -> bool {
    crate::is_log_filename(name)
}

/// `splitout_env(command)`: leading `VAR=value` words as a dict, and the rest of the command.
#[pyfunction]
fn splitout_env(command: &str) -> PyResult<(BTreeMap<String, String>, String)> {
    crate::splitout_env(command).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(committer_env, m)?)?;
    m.add_function(wrap_pyfunction!(is_log_filename, m)?)?;
    m.add_function(wrap_pyfunction!(splitout_env, m)?)?;
    m.add_class::<PyActiveRun>()?;
    m.add_class::<PyWorkerResult>()?;
    m.add_class::<PyJanitorResult>()?;
    m.add_class::<PyResumeInfo>()?;
    m.add_class::<scheduling::PyPool>()?;
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<queue::PyQueueItem>()?;
    m.add_class::<queue::AsyncRows>()?;
    m.add_class::<processor::PyQueueProcessor>()?;
    m.add_class::<server::PyServer>()?;
    m.add_function(wrap_pyfunction!(queue::vcs_info_json, m)?)?;
    m.add_function(wrap_pyfunction!(server::serve, m)?)?;
    m.add_function(wrap_pyfunction!(server::start_server, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_estimate_duration, m)?)?;
    m.add_function(wrap_pyfunction!(
        scheduling::py_estimate_success_probability_and_duration,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(scheduling::connect, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule_regular, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(scheduling::py_do_schedule_control, m)?)?;
    let py = m.py();
    m.add(
        "QueueItemAlreadyClaimed",
        py.get_type::<QueueItemAlreadyClaimed>(),
    )?;
    m.add("RunExists", py.get_type::<RunExists>())?;
    m.add(
        "CandidateUnavailable",
        py.get_type::<CandidateUnavailable>(),
    )?;
    m.add("QueueEmpty", py.get_type::<QueueEmpty>())?;
    m.add("QueueRateLimiting", py.get_type::<QueueRateLimiting>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    Ok(())
}
