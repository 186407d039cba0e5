//! The queue for Python: `QueueItem`, `VcsInfo` checking, and `Queue` (Python
//! `janitor.queue.Queue`) over a pool instead of one asyncpg connection. `iter_queue` is an
//! async iterator, as the Python async generator is.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::TimeDelta;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyType;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::errors::{ModelError, database_error, model_error, service_error};
use super::scheduling::{PyPool, micros};
use super::{collect_iterable, from_json_value, to_json_value};
use crate::models;

/// One queue row (Python `janitor.queue.QueueItem`); equal, ordered and hashed by id.
#[pyclass(name = "QueueItem", module = "janitor_runner", frozen)]
#[derive(Clone)]
pub struct PyQueueItem {
    pub(crate) inner: models::QueueItem,
}

#[pymethods]
impl PyQueueItem {
    #[new]
    #[pyo3(signature = (
        *, id, context, command, estimated_duration, campaign, refresh, requester, change_set,
        codebase
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: i64,
        context: Option<String>,
        command: String,
        estimated_duration: Option<TimeDelta>,
        campaign: String,
        refresh: Option<bool>,
        requester: Option<String>,
        change_set: Option<String>,
        codebase: String,
    ) -> Self {
        Self {
            inner: models::QueueItem {
                id,
                context,
                command,
                estimated_duration,
                campaign,
                refresh: refresh.unwrap_or(false),
                requester,
                change_set,
                codebase,
            },
        }
    }

    /// From the form `json()` gives (`estimated_duration` in seconds, or null).
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, js: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json_value(js)?;
        queue_item_from_json(&value)
            .map(|inner| Self { inner })
            .map_err(model_error)
    }

    /// The item's fields as JSON; `estimated_duration` in seconds.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &queue_item_json(&self.inner))
    }

    #[getter]
    fn id(&self) -> i64 {
        self.inner.id
    }
    #[getter]
    fn context(&self) -> Option<&str> {
        self.inner.context.as_deref()
    }
    #[getter]
    fn command(&self) -> &str {
        &self.inner.command
    }
    #[getter]
    fn estimated_duration(&self) -> Option<TimeDelta> {
        self.inner.estimated_duration
    }
    #[getter]
    fn campaign(&self) -> &str {
        &self.inner.campaign
    }
    #[getter]
    fn refresh(&self) -> bool {
        self.inner.refresh
    }
    #[getter]
    fn requester(&self) -> Option<&str> {
        self.inner.requester.as_deref()
    }
    #[getter]
    fn change_set(&self) -> Option<&str> {
        self.inner.change_set.as_deref()
    }
    #[getter]
    fn codebase(&self) -> &str {
        &self.inner.codebase
    }

    /// As in Python: equal to another item with the same id, unequal to anything else.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyQueueItem>()
            .is_ok_and(|other| other.get().inner.id == self.inner.id)
    }

    fn __lt__(&self, other: &Bound<'_, PyQueueItem>) -> bool {
        self.inner.id < other.get().inner.id
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        (slf.get_type(), slf.get().inner.id)
            .into_pyobject(slf.py())?
            .hash()
    }

    fn __repr__(&self) -> String {
        format!(
            "QueueItem(id={}, codebase={:?}, campaign={:?})",
            self.inner.id, self.inner.codebase, self.inner.campaign
        )
    }
}

fn queue_item_json(item: &models::QueueItem) -> Value {
    json!({
        "id": item.id,
        "context": item.context,
        "command": item.command,
        "estimated_duration": item.estimated_duration.map(|d| crate::time::seconds(&d)),
        "campaign": item.campaign,
        "refresh": item.refresh,
        "requester": item.requester,
        "change_set": item.change_set,
        "codebase": item.codebase,
    })
}

fn queue_item_from_json(value: &Value) -> Result<models::QueueItem, models::ModelError> {
    let object = value
        .as_object()
        .ok_or_else(|| models::ModelError("a queue item must be a JSON object".into()))?;
    let text = |key: &str| -> Result<Option<String>, models::ModelError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(models::ModelError(format!(
                "{key} must be a string or null"
            ))),
        }
    };
    let required =
        |key: &str| text(key)?.ok_or_else(|| models::ModelError(format!("{key} is required")));
    let estimated_duration = match object.get("estimated_duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let seconds = n
                .as_f64()
                .filter(|s| s.is_finite() && s.abs() < 1e12)
                .ok_or_else(|| models::ModelError("estimated_duration is out of range".into()))?;
            Some(TimeDelta::microseconds((seconds * 1e6).round() as i64))
        }
        Some(_) => {
            return Err(models::ModelError(
                "estimated_duration must be a number of seconds or null".into(),
            ));
        }
    };
    Ok(models::QueueItem {
        id: object
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| models::ModelError("id must be an integer".into()))?,
        context: text("context")?,
        command: required("command")?,
        estimated_duration,
        campaign: required("campaign")?,
        refresh: match object.get("refresh") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(models::ModelError("refresh must be a boolean".into())),
        },
        requester: text("requester")?,
        change_set: text("change_set")?,
        codebase: required("codebase")?,
    })
}

/// `_native.vcs_info_json(js)`: a VcsInfo dict checked and normalised (only `branch_url`,
/// `subpath` and `vcs_type`, each a string); what the Python `VcsInfo` class builds on.
#[pyfunction]
pub fn vcs_info_json<'py>(js: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let value = to_json_value(js)?;
    let info: models::VcsInfo = serde_json::from_value(value)
        .map_err(|e| ModelError::new_err(format!("not a VcsInfo: {e}")))?;
    from_json_value(js.py(), &vcs_json(&info))
}

/// The VcsInfo dict: only the keys that are known.
pub(crate) fn vcs_json(info: &models::VcsInfo) -> Value {
    serde_json::to_value(info).unwrap_or_else(|_| json!({}))
}

/// `(item, vcs_info)` as the Python `next_item` returns it: `(None, {})` for nothing.
pub(crate) fn item_with_vcs(
    py: Python<'_>,
    found: Option<(models::QueueItem, models::VcsInfo)>,
) -> PyResult<Py<PyAny>> {
    let (item, vcs) = match found {
        Some((item, vcs)) => (Some(PyQueueItem { inner: item }), vcs_json(&vcs)),
        None => (None, json!({})),
    };
    Ok((item, from_json_value(py, &vcs)?)
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

/// Seconds (as the database's epoch arithmetic gives them) as a timedelta, to the microsecond.
pub(crate) fn timedelta_from_seconds(seconds: f64) -> TimeDelta {
    TimeDelta::microseconds((seconds * 1e6).round() as i64)
}

type Loader = Pin<Box<dyn Future<Output = PyResult<Vec<Py<PyAny>>>> + Send>>;

/// An async iterator over values fetched by one query on the first `__anext__` (as the
/// Python async generators fetch all their rows at once).
#[pyclass(module = "janitor_runner", frozen)]
pub struct AsyncRows {
    state: Arc<tokio::sync::Mutex<RowsState>>,
}

struct RowsState {
    loader: Option<Loader>,
    rows: VecDeque<Py<PyAny>>,
}

impl AsyncRows {
    pub(crate) fn new(loader: Loader) -> Self {
        Self {
            state: Arc::new(tokio::sync::Mutex::new(RowsState {
                loader: Some(loader),
                rows: VecDeque::new(),
            })),
        }
    }
}

#[pymethods]
impl AsyncRows {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut state = state.lock().await;
            if let Some(loader) = state.loader.take() {
                state.rows = loader.await?.into();
            }
            state
                .rows
                .pop_front()
                .ok_or_else(|| PyStopAsyncIteration::new_err(()))
        })
    }
}

/// The queue (Python `janitor.queue.Queue`), over a pool instead of one connection.
#[pyclass(name = "Queue", module = "janitor_runner", frozen)]
pub struct PyQueue {
    pool: PgPool,
}

#[pymethods]
impl PyQueue {
    #[new]
    fn new(pool: &PyPool) -> Self {
        Self {
            pool: pool.pool.clone(),
        }
    }

    /// `(position, wait_time)` of the first row for (campaign, codebase), or `(None, None)`;
    /// the same numbers as the `queue_positions` view.
    fn get_position<'py>(
        &self,
        py: Python<'py>,
        campaign: String,
        codebase: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pool = self.pool.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let found = crate::db::queue::position(&pool, &codebase, &campaign)
                .await
                .map_err(database_error)?;
            Ok(match found {
                Some((position, wait)) => (Some(position), wait.map(timedelta_from_seconds)),
                None => (None, None),
            })
        })
    }

    /// `Queue.get_item`: the item with this id, or None.
    fn get_item<'py>(&self, py: Python<'py>, queue_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let pool = self.pool.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let item = crate::queue::get_item(&pool, queue_id)
                .await
                .map_err(service_error)?;
            Ok(item.map(|inner| PyQueueItem { inner }))
        })
    }

    /// `Queue.next_item`: `(item, vcs_info)` of the first item in run order that is not in
    /// `assigned_queue_items` and whose branch host is not in `exclude_hosts`; `(None, {})`
    /// when there is none. It does not claim the item.
    #[pyo3(signature = (codebase=None, campaign=None, exclude_hosts=None, assigned_queue_items=None))]
    fn next_item<'py>(
        &self,
        py: Python<'py>,
        codebase: Option<String>,
        campaign: Option<String>,
        exclude_hosts: Option<&Bound<'py, PyAny>>,
        assigned_queue_items: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exclude_hosts: Vec<String> = collect_iterable(exclude_hosts)?;
        let assigned_queue_items: Vec<i64> = collect_iterable(assigned_queue_items)?;
        let pool = self.pool.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let found = crate::queue::next_item(
                &pool,
                codebase.as_deref().filter(|c| !c.is_empty()),
                campaign.as_deref().filter(|c| !c.is_empty()),
                &exclude_hosts,
                &assigned_queue_items,
            )
            .await
            .map_err(service_error)?;
            Python::attach(|py| item_with_vcs(py, found))
        })
    }

    /// `Queue.iter_queue`: `async for item in queue.iter_queue(limit, campaign)`, in run order.
    #[pyo3(signature = (limit=None, campaign=None))]
    fn iter_queue(&self, limit: Option<i64>, campaign: Option<String>) -> AsyncRows {
        let pool = self.pool.clone();
        AsyncRows::new(Box::pin(async move {
            let items =
                crate::queue::items(&pool, campaign.as_deref().filter(|c| !c.is_empty()), limit)
                    .await
                    .map_err(service_error)?;
            Python::attach(|py| {
                items
                    .into_iter()
                    .map(|inner| Ok(Py::new(py, PyQueueItem { inner })?.into_any()))
                    .collect()
            })
        }))
    }

    /// `Queue.add`: insert, or overwrite the row for the same (codebase, campaign, change set)
    /// unless that one is in a more urgent bucket; `(queue_id, bucket)` of the row after.
    #[pyo3(signature = (
        *, codebase, command, campaign, change_set=None, offset=0.0, bucket="default",
        context=None, estimated_duration=None, refresh=false, requester=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn add<'py>(
        &self,
        py: Python<'py>,
        codebase: String,
        command: String,
        campaign: String,
        change_set: Option<String>,
        offset: f64,
        bucket: &str,
        context: Option<String>,
        estimated_duration: Option<TimeDelta>,
        refresh: bool,
        requester: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pool = self.pool.clone();
        let bucket = bucket.to_string();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut conn = pool.acquire().await.map_err(database_error)?;
            let (id, bucket) = crate::db::queue::add(
                &mut conn,
                &crate::db::queue::NewQueueItem {
                    codebase: &codebase,
                    campaign: &campaign,
                    change_set: change_set.as_deref(),
                    command: &command,
                    offset,
                    bucket: &bucket,
                    context: context.as_deref(),
                    estimated_duration: estimated_duration.map(|d| micros(d).to_interval()),
                    refresh,
                    requester: requester.as_deref(),
                },
            )
            .await
            .map_err(database_error)?;
            Ok((i64::from(id), bucket))
        })
    }

    /// `Queue.get_buckets`: `[(bucket, count)]` in bucket order.
    fn get_buckets<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pool = self.pool.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            crate::db::queue::bucket_counts(&pool)
                .await
                .map_err(database_error)
        })
    }
}
