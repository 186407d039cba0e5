//! `ActiveRun`, a run in progress as the Python runner models it.

use chrono::NaiveDateTime;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::PyJanitorResult;
use crate::models;
use crate::python::backchannel;
use crate::python::errors::{ModelError, backchannel_error, model_error};
use crate::python::queue::PyQueueItem;
use crate::python::{any_to_json, from_json_value, now_or_utc, to_json_value};

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
pub(crate) struct PyActiveRun {
    pub(crate) inner: models::ActiveRun,
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
        queue_item: &Bound<'_, PyQueueItem>,
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
                .map_err(|e| backchannel_error(e, true))
        })
    }

    /// A result for this run without a worker report (Python `create_result`, as the aborts
    /// use it): `code` and `branch_url` are required, as in Python; the run's `resume_from`
    /// is kept (DECISIONS.md 10; Python drops it).
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
