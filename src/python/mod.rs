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

mod backchannel;
mod processor;
mod queue;
mod results;
mod runs;
mod scheduling;
mod server;

// The exceptions of the Python runner, with its names, so `except` clauses keep working; all
// but ModelError (a ValueError, as bad input is in Python) share the base RunnerError.
create_exception!(janitor_runner, RunnerError, PyException);
create_exception!(janitor_runner, QueueItemAlreadyClaimed, RunnerError);
create_exception!(janitor_runner, RunExists, RunnerError);
create_exception!(janitor_runner, CandidateUnavailable, RunnerError);
create_exception!(janitor_runner, QueueEmpty, RunnerError);
create_exception!(janitor_runner, QueueRateLimiting, RunnerError);
// Every codebase value is 0, so none can be normalised (Python: asyncpg's DivisionByZeroError
// from the SQL; DECISIONS asks for a typed error).
create_exception!(janitor_runner, ZeroMaximumValue, RunnerError);
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
        Error::Backchannel(error) => backchannel::backchannel_error(error, false),
        other => pyo3::exceptions::PyRuntimeError::new_err(other.to_string()),
    }
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

fn model_error(error: models::ModelError) -> PyErr {
    ModelError::new_err(error.0)
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

fn vcs_info_from(obj: &Bound<'_, PyAny>) -> PyResult<models::VcsInfo> {
    if obj.is_none() {
        return Ok(models::VcsInfo::default());
    }
    serde_json::from_value(to_json_value(obj)?)
        .map_err(|e| ModelError::new_err(format!("not a VcsInfo: {e}")))
}

/// A run in progress, as kept in the active-run store (Python `ActiveRun`): the same keyword
/// constructor, attributes, JSON form and equality.
#[pyclass(name = "ActiveRun", module = "janitor_runner", from_py_object)]
#[derive(Clone)]
struct PyActiveRun {
    inner: models::ActiveRun,
}

#[pymethods]
impl PyActiveRun {
    #[new]
    #[pyo3(signature = (
        *, campaign, codebase, change_set, command, instigated_context, estimated_duration,
        queue_id, log_id, start_time, vcs_info, backchannel, worker_name, worker_link=None,
        resume_from=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        campaign: String,
        codebase: Option<String>,
        change_set: Option<String>,
        command: String,
        instigated_context: Option<&Bound<'_, PyAny>>,
        estimated_duration: Option<chrono::TimeDelta>,
        queue_id: i64,
        log_id: String,
        start_time: NaiveDateTime,
        vcs_info: &Bound<'_, PyAny>,
        backchannel: Option<&Bound<'_, PyAny>>,
        worker_name: Option<String>,
        worker_link: Option<String>,
        resume_from: Option<String>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: models::ActiveRun {
                log_id,
                queue_id,
                codebase,
                campaign,
                change_set,
                command,
                instigated_context: any_to_json(instigated_context)?,
                estimated_duration,
                start_time,
                vcs_info: vcs_info_from(vcs_info)?,
                backchannel: backchannel::from_object(backchannel)?,
                worker_name,
                worker_link,
                resume_from,
            },
        })
    }

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
    /// started now. `backchannel` is a backchannel object, its JSON form, or None.
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
        Ok(Self {
            inner: models::ActiveRun::from_queue_item(
                &queue_item.get().inner,
                uuid::Uuid::new_v4().to_string(),
                now_or_utc(None),
                vcs_info_from(vcs_info)?,
                backchannel::from_object(backchannel)?,
                worker_name,
                worker_link,
            ),
        })
    }

    /// Pings the run's worker through its backchannel; True, or the ping's exception.
    fn ping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let channel = self.inner.backchannel.clone();
        let log_id = self.inner.log_id.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            backchannel::client()?
                .ping(&channel, &log_id)
                .await
                .map(|_| true)
                .map_err(|e| backchannel::backchannel_error(e, true))
        })
    }

    /// A result for this run without a worker report (Python `create_result`, as the aborts
    /// use it): `code` and `branch_url` are required, as in Python; the run's `resume_from`
    /// is kept (DECISIONS 10; Python drops it).
    #[pyo3(signature = (
        *, code, branch_url, description=None, vcs_type=None, subpath=None,
        logfilenames=Vec::new(), transient=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create_result(
        &self,
        code: String,
        branch_url: Option<String>,
        description: Option<String>,
        vcs_type: Option<String>,
        subpath: Option<String>,
        logfilenames: Vec<String>,
        transient: Option<bool>,
    ) -> PyJanitorResult {
        let mut inner =
            models::JanitorResult::aborted(&self.inner, &code, "", transient, now_or_utc(None));
        inner.description = description;
        inner.branch_url = branch_url;
        inner.vcs_type = vcs_type;
        inner.subpath = subpath.or(inner.subpath);
        inner.logfilenames = logfilenames;
        PyJanitorResult { inner }
    }

    #[getter]
    fn log_id(&self) -> &str {
        &self.inner.log_id
    }
    #[setter]
    fn set_log_id(&mut self, value: String) {
        self.inner.log_id = value;
    }

    #[getter]
    fn campaign(&self) -> &str {
        &self.inner.campaign
    }
    #[setter]
    fn set_campaign(&mut self, value: String) {
        self.inner.campaign = value;
    }

    #[getter]
    fn queue_id(&self) -> i64 {
        self.inner.queue_id
    }
    #[setter]
    fn set_queue_id(&mut self, value: i64) {
        self.inner.queue_id = value;
    }

    #[getter]
    fn codebase(&self) -> Option<&str> {
        self.inner.codebase.as_deref()
    }
    #[setter]
    fn set_codebase(&mut self, value: Option<String>) {
        self.inner.codebase = value;
    }

    #[getter]
    fn change_set(&self) -> Option<&str> {
        self.inner.change_set.as_deref()
    }
    #[setter]
    fn set_change_set(&mut self, value: Option<String>) {
        self.inner.change_set = value;
    }

    #[getter]
    fn command(&self) -> &str {
        &self.inner.command
    }
    #[setter]
    fn set_command(&mut self, value: String) {
        self.inner.command = value;
    }

    #[getter]
    fn instigated_context<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.instigated_context)
    }
    #[setter]
    fn set_instigated_context(&mut self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.instigated_context = any_to_json(value)?;
        Ok(())
    }

    #[getter]
    fn estimated_duration(&self) -> Option<chrono::TimeDelta> {
        self.inner.estimated_duration
    }
    #[setter]
    fn set_estimated_duration(&mut self, value: Option<chrono::TimeDelta>) {
        self.inner.estimated_duration = value;
    }

    #[getter]
    fn start_time(&self) -> NaiveDateTime {
        self.inner.start_time
    }
    #[setter]
    fn set_start_time(&mut self, value: NaiveDateTime) {
        self.inner.start_time = value;
    }

    /// A copy of the run's VcsInfo (assign a new dict to change it).
    #[getter]
    fn vcs_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.inner.vcs_info)
            .map_err(|e| ModelError::new_err(e.to_string()))?;
        from_json_value(py, &value)
    }
    #[setter]
    fn set_vcs_info(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.vcs_info = vcs_info_from(value)?;
        Ok(())
    }

    #[getter]
    fn backchannel(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        backchannel::to_object(py, &self.inner.backchannel)
    }
    #[setter]
    fn set_backchannel(&mut self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.backchannel = backchannel::from_object(value)?;
        Ok(())
    }

    #[getter]
    fn worker_name(&self) -> Option<&str> {
        self.inner.worker_name.as_deref()
    }
    #[setter]
    fn set_worker_name(&mut self, value: Option<String>) {
        self.inner.worker_name = value;
    }

    #[getter]
    fn worker_link(&self) -> Option<&str> {
        self.inner.worker_link.as_deref()
    }
    #[setter]
    fn set_worker_link(&mut self, value: Option<String>) {
        self.inner.worker_link = value;
    }

    #[getter]
    fn resume_from(&self) -> Option<&str> {
        self.inner.resume_from.as_deref()
    }
    #[setter]
    fn set_resume_from(&mut self, value: Option<String>) {
        self.inner.resume_from = value;
    }

    #[getter]
    fn vcs_type(&self) -> Option<&str> {
        self.inner.vcs_type()
    }

    #[getter]
    fn main_branch_url(&self) -> Option<&str> {
        self.inner.main_branch_url()
    }

    #[getter]
    fn subpath(&self) -> Option<&str> {
        self.inner.subpath()
    }

    /// How long the run has been going (now in UTC minus its start).
    #[getter]
    fn current_duration(&self) -> chrono::TimeDelta {
        self.inner.current_duration(now_or_utc(None))
    }

    /// As the Python dataclass-like `__eq__`: equal JSON apart from `current_duration`.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyActiveRun>()
            .is_ok_and(|other| other.borrow().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!("ActiveRun(log_id={:?})", self.inner.log_id)
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
    /// The Python class's keyword constructor. With `worker_result`, its fields win as in
    /// the Python (code, times, branch URL, VCS type, subpath, transient, codebase); without
    /// it, the given times. The times must be known either way (Python stores `None` and
    /// fails later), and so must the campaign.
    #[new]
    #[pyo3(signature = (
        *, codebase, log_id, branch_url, code, description=None, worker_result=None,
        logfilenames=None, campaign=None, start_time=None, finish_time=None, worker_name=None,
        vcs_type=None, subpath=None, resume_from=None, change_set=None, transient=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        codebase: String,
        log_id: String,
        branch_url: Option<String>,
        code: String,
        description: Option<String>,
        worker_result: Option<&results::PyWorkerResult>,
        logfilenames: Option<Vec<String>>,
        campaign: Option<String>,
        start_time: Option<NaiveDateTime>,
        finish_time: Option<NaiveDateTime>,
        worker_name: Option<String>,
        vcs_type: Option<String>,
        subpath: Option<String>,
        resume_from: Option<String>,
        change_set: Option<String>,
        transient: Option<bool>,
    ) -> PyResult<Self> {
        let campaign =
            campaign.ok_or_else(|| PyValueError::new_err("JanitorResult needs a campaign"))?;
        let required = |time: Option<NaiveDateTime>, name: &str| {
            time.ok_or_else(|| PyValueError::new_err(format!("JanitorResult needs a {name}")))
        };
        let inner = match worker_result.map(|w| w.inner.clone()) {
            Some(worker) => {
                let start_time = required(worker.start_time.or(start_time), "start_time")?;
                let finish_time = required(worker.finish_time.or(finish_time), "finish_time")?;
                let of = models::ResultOf {
                    log_id,
                    codebase,
                    campaign,
                    change_set,
                    description,
                    worker_name,
                    resume_from,
                    logfilenames: logfilenames.unwrap_or_default(),
                };
                models::JanitorResult::reported(of, worker, start_time, finish_time)
            }
            None => models::JanitorResult {
                log_id,
                codebase,
                campaign,
                change_set,
                code,
                description,
                context: None,
                main_branch_revision: None,
                revision: None,
                codemod_result: Value::Null,
                value: None,
                builder_result: None,
                branches: None,
                tags: None,
                remotes: Some(Value::Object(serde_json::Map::new())),
                failure_details: Value::Null,
                failure_stage: None,
                start_time: required(start_time, "start_time")?,
                finish_time: required(finish_time, "finish_time")?,
                logfilenames: logfilenames.unwrap_or_default(),
                worker_name,
                branch_url,
                vcs_type,
                subpath,
                target_branch_url: None,
                resume_from: None,
                transient,
            },
        };
        Ok(Self { inner })
    }

    #[getter]
    fn log_id(&self) -> &str {
        &self.inner.log_id
    }

    #[getter]
    fn codebase(&self) -> &str {
        &self.inner.codebase
    }

    #[getter]
    fn campaign(&self) -> &str {
        &self.inner.campaign
    }

    #[getter]
    fn change_set(&self) -> Option<&str> {
        self.inner.change_set.as_deref()
    }

    #[getter]
    fn description(&self) -> Option<&str> {
        self.inner.description.as_deref()
    }

    #[getter]
    fn branch_url(&self) -> Option<&str> {
        self.inner.branch_url.as_deref()
    }

    #[getter]
    fn vcs_type(&self) -> Option<&str> {
        self.inner.vcs_type.as_deref()
    }

    #[getter]
    fn subpath(&self) -> Option<&str> {
        self.inner.subpath.as_deref()
    }

    #[getter]
    fn transient(&self) -> Option<bool> {
        self.inner.transient
    }

    #[getter]
    fn logfilenames(&self) -> Vec<String> {
        self.inner.logfilenames.clone()
    }

    #[getter]
    fn worker_name(&self) -> Option<&str> {
        self.inner.worker_name.as_deref()
    }

    #[getter]
    fn resume_from(&self) -> Option<&str> {
        self.inner.resume_from.as_deref()
    }

    #[getter]
    fn start_time(&self) -> NaiveDateTime {
        self.inner.start_time
    }

    #[getter]
    fn finish_time(&self) -> NaiveDateTime {
        self.inner.finish_time
    }

    #[getter]
    fn duration(&self) -> chrono::TimeDelta {
        self.inner.duration()
    }

    /// The result of `active_run` as its worker reported it, with the uploaded log names.
    #[classmethod]
    #[pyo3(signature = (active_run, worker_result, logfilenames, now=None))]
    fn from_worker_result(
        _cls: &Bound<'_, PyType>,
        active_run: &PyActiveRun,
        worker_result: &results::PyWorkerResult,
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

/// `dpkg_vendor()`: `dpkg-vendor --query vendor` of this host ("Debian" when it cannot be
/// asked), asked once per process as the Python's cached function does.
#[pyfunction]
fn dpkg_vendor(py: Python<'_>) -> String {
    static VENDOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    py.detach(|| {
        VENDOR
            .get_or_init(|| {
                pyo3_async_runtimes::tokio::get_runtime()
                    .block_on(crate::assign::builder::host_vendor())
            })
            .clone()
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(committer_env, m)?)?;
    m.add_function(wrap_pyfunction!(is_log_filename, m)?)?;
    m.add_function(wrap_pyfunction!(splitout_env, m)?)?;
    m.add_function(wrap_pyfunction!(dpkg_vendor, m)?)?;
    m.add_class::<PyActiveRun>()?;
    m.add_class::<results::PyWorkerResult>()?;
    m.add_class::<PyJanitorResult>()?;
    m.add_class::<PyResumeInfo>()?;
    m.add_class::<backchannel::PyBackchannel>()?;
    m.add_class::<backchannel::PyPollingBackchannel>()?;
    m.add_class::<backchannel::PyJenkinsBackchannel>()?;
    backchannel::add_exceptions(m)?;
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
    m.add("RunnerError", py.get_type::<RunnerError>())?;
    m.add("ZeroMaximumValue", py.get_type::<ZeroMaximumValue>())?;
    Ok(())
}
