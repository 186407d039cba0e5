//! `JanitorResult`, the stored outcome of a run, and `ResumeInfo`, where a run resumes from,
//! as the Python runner models them.

use chrono::NaiveDateTime;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{PyActiveRun, PyWorkerResult};
use crate::models;
use crate::python::errors::model_error;
use crate::python::{from_json_value, now_or_utc, to_json_value};

/// The stored outcome of a run (Python `JanitorResult`).
#[pyclass(name = "JanitorResult", module = "janitor_runner", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyJanitorResult {
    pub(crate) inner: models::JanitorResult,
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
        worker_result: Option<&PyWorkerResult>,
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
            None => {
                let times = (
                    required(start_time, "start_time")?,
                    required(finish_time, "finish_time")?,
                );
                let of = models::ResultOf {
                    log_id,
                    codebase,
                    campaign,
                    change_set,
                    description,
                    worker_name,
                    resume_from: None,
                    logfilenames: logfilenames.unwrap_or_default(),
                };
                let worked = models::Worked {
                    branch_url,
                    vcs_type,
                    subpath,
                };
                models::JanitorResult::without_worker(of, code, times, worked, transient)
            }
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
pub(crate) struct PyResumeInfo {
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
