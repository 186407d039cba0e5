//! Backchannels for Python: `Backchannel` (none), `PollingBackchannel` and
//! `JenkinsBackchannel`, with the Python runner's constructors, JSON forms and awaitable
//! `ping`/`kill`/`list_log_files`/`get_log_file` (whose exceptions, `PingFailure` and the
//! others, are in `errors`).

use std::sync::OnceLock;

use futures::TryStreamExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use serde_json::Value;

use super::errors::{backchannel_error, model_error};
use super::{from_json_value, to_json_value};
use crate::backchannel::BackchannelClient;
use crate::models::BackchannelInfo;

/// The client backchannel objects use when no QueueProcessor is involved: one per process,
/// built on first use.
pub fn client() -> PyResult<&'static BackchannelClient> {
    static CLIENT: OnceLock<BackchannelClient> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = BackchannelClient::new().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// The Python object for a backchannel: the subclass its kind calls for.
pub fn to_object(py: Python<'_>, info: &BackchannelInfo) -> PyResult<Py<PyAny>> {
    let base = PyBackchannel { info: info.clone() };
    Ok(match info {
        BackchannelInfo::None => Py::new(py, base)?.into_any(),
        BackchannelInfo::Polling { .. } => Py::new(
            py,
            PyClassInitializer::from(base).add_subclass(PyPollingBackchannel),
        )?
        .into_any(),
        BackchannelInfo::Jenkins { .. } => Py::new(
            py,
            PyClassInitializer::from(base).add_subclass(PyJenkinsBackchannel),
        )?
        .into_any(),
    })
}

/// A backchannel given to a constructor: a backchannel object, its JSON form, or None.
pub fn from_object(obj: Option<&Bound<'_, PyAny>>) -> PyResult<BackchannelInfo> {
    match obj {
        None => Ok(BackchannelInfo::None),
        Some(obj) if obj.is_none() => Ok(BackchannelInfo::None),
        Some(obj) => match obj.cast::<PyBackchannel>() {
            Ok(backchannel) => Ok(backchannel.get().info.clone()),
            // A dict: the stored form (`{"my_url", ...}`) or the assign request's
            // (`{"kind", "url"}`).
            Err(_) => {
                let value = to_json_value(obj)?;
                if value.get("kind").is_some() {
                    BackchannelInfo::from_request(&value).map_err(model_error)
                } else {
                    BackchannelInfo::from_json(&value).map_err(model_error)
                }
            }
        },
    }
}

/// A run's way back to its worker; this base class is "none": every call raises
/// `NotImplementedError` (Python `janitor.runner.Backchannel`).
#[pyclass(name = "Backchannel", module = "janitor_runner", subclass, frozen)]
pub struct PyBackchannel {
    pub(crate) info: BackchannelInfo,
}

#[pymethods]
impl PyBackchannel {
    #[new]
    fn new() -> Self {
        Self {
            info: BackchannelInfo::None,
        }
    }

    /// Whether the worker is still on run `log_id`; raises `PingTimeout`, `PingFailure` or
    /// `PingFatalFailure` (or `NotImplementedError` without a way to ask).
    fn ping<'py>(&self, py: Python<'py>, log_id: String) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info.clone();
        super::awaitable_none(py, async move {
            client()?
                .ping(&info, &log_id)
                .await
                .map(|_| ())
                .map_err(|e| backchannel_error(e, true))
        })
    }

    /// Asks the worker to stop its run.
    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info.clone();
        super::awaitable_none(py, async move {
            client()?
                .kill(&info)
                .await
                .map_err(|e| backchannel_error(e, false))
        })
    }

    /// The names of the worker's log files.
    fn list_log_files<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            client()?
                .list_log_files(&info)
                .await
                .map_err(|e| backchannel_error(e, false))
        })
    }

    /// One log file as a binary file object (`io.BytesIO`, as in Python); raises
    /// `FileNotFoundError` when the worker has no such log.
    fn get_log_file<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let stream = client()?
                .get_log_file(&info, &name)
                .await
                .map_err(|e| backchannel_error(e, false))?;
            let chunks: Vec<bytes::Bytes> = stream
                .try_collect()
                .await
                .map_err(|e| backchannel_error(e, false))?;
            let body = chunks.concat();
            Python::attach(|py| {
                let bytes = pyo3::types::PyBytes::new(py, &body);
                Ok(py
                    .import("io")?
                    .getattr("BytesIO")?
                    .call1((bytes,))?
                    .unbind())
            })
        })
    }

    /// The JSON form kept in the ActiveRun: `{}`, `{"my_url"}` or `{"my_url", "jenkins"}`.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.info.to_json())
    }

    fn __repr__(&self) -> String {
        match &self.info {
            BackchannelInfo::None => "<Backchannel()>".to_string(),
            BackchannelInfo::Polling { my_url } => format!("<PollingBackchannel({my_url:?})>"),
            BackchannelInfo::Jenkins { my_url, .. } => {
                format!("<JenkinsBackchannel({my_url:?})>")
            }
        }
    }
}

fn my_url(info: &BackchannelInfo) -> &str {
    match info {
        BackchannelInfo::Polling { my_url } | BackchannelInfo::Jenkins { my_url, .. } => my_url,
        BackchannelInfo::None => "",
    }
}

fn required_url(js: &Value) -> PyResult<String> {
    match js.get("my_url") {
        Some(Value::String(url)) => Ok(url.clone()),
        _ => Err(pyo3::exceptions::PyKeyError::new_err("my_url")),
    }
}

/// A worker's diagnostics port, polled over HTTP (`/log-id`, `/logs`, `/kill`).
#[pyclass(name = "PollingBackchannel", module = "janitor_runner", extends = PyBackchannel, frozen)]
pub struct PyPollingBackchannel;

#[pymethods]
impl PyPollingBackchannel {
    #[new]
    fn new(my_url: String) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyBackchannel {
            info: BackchannelInfo::Polling { my_url },
        })
        .add_subclass(Self)
    }

    /// From `{"my_url": ...}`.
    #[classmethod]
    fn from_json(
        cls: &Bound<'_, PyType>,
        js: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyPollingBackchannel>> {
        let url = required_url(&to_json_value(js)?)?;
        Py::new(cls.py(), Self::new(url))
    }

    #[getter]
    fn my_url(slf: PyRef<'_, Self>) -> String {
        my_url(&slf.as_super().info).to_string()
    }
}

/// A Jenkins build running the worker.
#[pyclass(name = "JenkinsBackchannel", module = "janitor_runner", extends = PyBackchannel, frozen)]
pub struct PyJenkinsBackchannel;

#[pymethods]
impl PyJenkinsBackchannel {
    #[new]
    #[pyo3(signature = (my_url, metadata=None))]
    fn new(
        my_url: String,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let metadata = match metadata {
            Some(obj) if !obj.is_none() => to_json_value(obj)?,
            _ => Value::Null,
        };
        Ok(PyClassInitializer::from(PyBackchannel {
            info: BackchannelInfo::Jenkins { my_url, metadata },
        })
        .add_subclass(Self))
    }

    /// From `{"my_url": ..., "jenkins": <metadata>}` (both keys required, as in Python).
    #[classmethod]
    fn from_json(
        cls: &Bound<'_, PyType>,
        js: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyJenkinsBackchannel>> {
        let value = to_json_value(js)?;
        let url = required_url(&value)?;
        let metadata = value
            .get("jenkins")
            .cloned()
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("jenkins"))?;
        Py::new(
            cls.py(),
            PyClassInitializer::from(PyBackchannel {
                info: BackchannelInfo::Jenkins {
                    my_url: url,
                    metadata,
                },
            })
            .add_subclass(Self),
        )
    }

    #[getter]
    fn my_url(slf: PyRef<'_, Self>) -> String {
        my_url(&slf.as_super().info).to_string()
    }
}
