//! `QueueProcessor` for Python: the run registry of the Python runner's class of that name,
//! with its method names, over the same shared state the HTTP apps use.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{NaiveDateTime, TimeDelta};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use sqlx::PgPool;

use super::errors::service_error;
use super::models::{PyActiveRun, PyJanitorResult};
use super::queue::{AsyncRows, item_with_vcs, timedelta_from_seconds};
use super::scheduling::PyPool;
use super::{collect_iterable, from_json_value};
use crate::app::{AppState, DatabaseReadiness, Settings, StoreLocation};
use crate::backchannel::watchdog::{KEEPALIVE_INTERVAL, Watchdog, WatchdogHandle};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::registry::{self, RetryAfter};

/// The Python runner's `QueueProcessor`: active runs in Redis (`redis`, the Python runner's
/// keys) or else in the database; without a database, the registry, rate limits and status
/// work on Redis alone. The configuration comes from `config` (a janitor.conf path) or, as in
/// the Python, from the app it is served with (`create_app`).
#[pyclass(name = "QueueProcessor", module = "janitor_runner", frozen, subclass)]
pub struct PyQueueProcessor {
    state: RwLock<Arc<AppState>>,
    watchdog: Mutex<Option<Arc<WatchdogHandle>>>,
}

impl Drop for PyQueueProcessor {
    fn drop(&mut self) {
        // The watchdog holds the state; without this it would outlive the processor.
        if let Some(handle) = self.watchdog_slot().take() {
            handle.request_stop();
        }
    }
}

impl PyQueueProcessor {
    fn watchdog_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<WatchdogHandle>>> {
        self.watchdog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state the processor works on (replaced when an app is created with another
    /// configuration or database).
    pub(crate) fn state(&self) -> Arc<AppState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace_state(&self, state: Arc<AppState>) {
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// The state, for a method that needs the database.
    fn state_with_database(&self) -> PyResult<Arc<AppState>> {
        let state = self.state();
        if state.database.is_absent() {
            return Err(PyRuntimeError::new_err(NO_DATABASE));
        }
        Ok(state)
    }
}

/// The running watchdog task of a QueueProcessor (what the Python's `_watch_dog` holds).
#[pyclass(name = "WatchdogTask", module = "janitor_runner", frozen)]
pub struct PyWatchdogTask {
    handle: Arc<WatchdogHandle>,
}

#[pymethods]
impl PyWatchdogTask {
    /// Whether the watchdog has stopped.
    fn done(&self) -> bool {
        self.handle.is_finished()
    }

    /// Asks the watchdog to stop.
    fn cancel(&self) {
        self.handle.request_stop();
    }

    fn __repr__(&self) -> String {
        format!("<WatchdogTask done={}>", self.done())
    }
}

const NO_DATABASE: &str = "this QueueProcessor was created without a database";

/// A location given as a string or path (what identifies a Python log-file, artifact or VCS
/// manager).
fn location(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = value.extract::<String>() {
        return Ok(Some(text).filter(|t| !t.is_empty()));
    }
    if let Ok(path) = value.extract::<PathBuf>() {
        return Ok(Some(path.to_string_lossy().into_owned()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a location (a URL or a directory, str or os.PathLike), not {}",
        value.get_type().name()?
    )))
}

/// `public_vcs_managers`: one location for all (`https://host/` or a directory), or a
/// mapping of VCS name to location, as `get_vcs_managers` would be given them.
fn vcs_location(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    if let Some(mapping) = value.and_then(|v| v.cast::<pyo3::types::PyDict>().ok()) {
        let mut pairs = Vec::new();
        for (vcs, place) in mapping.iter() {
            let place = location(Some(&place), "a VCS manager location")?.unwrap_or_default();
            pairs.push(format!("{}={place}", vcs.extract::<String>()?));
        }
        return Ok(Some(pairs.join(",")).filter(|p| !p.is_empty()));
    }
    location(value, "public_vcs_managers")
}

/// The pool to assemble on, and whether it stands in for no database (with Redis alone, a
/// pool that never connects).
fn pool_or_absent(database: Option<&PyPool>, redis: bool) -> PyResult<(PgPool, bool)> {
    Ok(match database {
        Some(pool) => (pool.pool.clone(), false),
        None if redis => {
            // The pool's housekeeping task needs the runtime it will live on.
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            (crate::db::absent_pool(), true)
        }
        None => {
            return Err(PyTypeError::new_err(
                "QueueProcessor needs a database (a Pool), a Redis URL, or both",
            ));
        }
    })
}

fn assemble(
    py: Python<'_>,
    pool: PgPool,
    store: StoreLocation,
    config: Option<PathBuf>,
    settings: Settings,
) -> PyResult<AppState> {
    // Assembling connects to Redis and reads the config: done on the shared runtime
    // (the background tasks it starts live there), without the GIL.
    let state = py.detach(|| {
        pyo3_async_runtimes::tokio::get_runtime().block_on(async move {
            let config = match config {
                Some(path) => Config::load(&path).await.map_err(|e| e.to_string())?,
                None => {
                    Config::parse("", std::path::Path::new("<none>")).map_err(|e| e.to_string())?
                }
            };
            AppState::assemble(pool, store, config, settings, Arc::new(SystemClock))
                .await
                .map_err(|e| e.to_string())
        })
    });
    state.map_err(PyRuntimeError::new_err)
}

#[pymethods]
impl PyQueueProcessor {
    #[new]
    #[pyo3(signature = (
        database, redis=None, run_timeout=60, logfile_manager=None, artifact_manager=None,
        public_vcs_managers=None, use_cached_only=false, committer=None,
        backup_artifact_manager=None, backup_logfile_manager=None, avoid_hosts=None,
        dep_server_url=None, apt_archive_url=None, *, config=None, redis_prefix=String::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        database: Option<&PyPool>,
        redis: Option<String>,
        run_timeout: i64,
        logfile_manager: Option<&Bound<'_, PyAny>>,
        artifact_manager: Option<&Bound<'_, PyAny>>,
        public_vcs_managers: Option<&Bound<'_, PyAny>>,
        use_cached_only: bool,
        committer: Option<String>,
        backup_artifact_manager: Option<&Bound<'_, PyAny>>,
        backup_logfile_manager: Option<&Bound<'_, PyAny>>,
        avoid_hosts: Option<&Bound<'_, PyAny>>,
        dep_server_url: Option<String>,
        apt_archive_url: Option<String>,
        config: Option<PathBuf>,
        redis_prefix: String,
    ) -> PyResult<Self> {
        // Accepted as the Python accepts it; it has no effect there either.
        let _ = use_cached_only;
        let backup_directory = backup_directory(
            location(backup_logfile_manager, "backup_logfile_manager")?,
            location(backup_artifact_manager, "backup_artifact_manager")?,
        )?;
        let avoid_hosts: Vec<String> = collect_iterable(avoid_hosts)?;
        let settings = Settings {
            avoid_hosts: avoid_hosts.into_iter().collect::<BTreeSet<_>>(),
            run_timeout_minutes: run_timeout,
            public_vcs_location: vcs_location(public_vcs_managers)?,
            public_apt_archive_location: apt_archive_url,
            public_dep_server_url: dep_server_url,
            backup_directory,
            logs_location: location(logfile_manager, "logfile_manager")?,
            artifact_location: location(artifact_manager, "artifact_manager")?,
            committer: committer.filter(|c| !c.is_empty()),
            ..Settings::default()
        };
        let redis = redis.filter(|u| !u.is_empty());
        let (pool, absent) = pool_or_absent(database, redis.is_some())?;
        let store = match redis {
            Some(url) => StoreLocation::Redis {
                url,
                prefix: redis_prefix,
            },
            None => StoreLocation::Postgres,
        };
        let mut state = assemble(py, pool, store, config, settings)?;
        if absent {
            state.database = DatabaseReadiness::absent(NO_DATABASE);
        }
        Ok(Self {
            state: RwLock::new(Arc::new(state)),
            watchdog: Mutex::new(None),
        })
    }

    /// Starts the watchdog (a pass every 10 s on the shared runtime: pings, keep-alives,
    /// aborts of dead runs); raises RuntimeError when it already runs.
    fn start_watchdog(&self) -> PyResult<()> {
        let mut slot = self.watchdog_slot();
        if slot.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return Err(PyRuntimeError::new_err("Watchdog already started"));
        }
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        let watchdog = Arc::new(Watchdog::new(self.state()));
        *slot = Some(Arc::new(watchdog.spawn(KEEPALIVE_INTERVAL)));
        Ok(())
    }

    /// Stops the watchdog (it ends after the check under way); nothing if none runs.
    fn stop_watchdog(&self) {
        if let Some(handle) = self.watchdog_slot().take() {
            handle.request_stop();
        }
    }

    /// The running watchdog task, or None (Python's `_watch_dog`).
    #[getter(_watch_dog)]
    fn watch_dog(&self) -> Option<PyWatchdogTask> {
        self.watchdog_slot().as_ref().map(|handle| PyWatchdogTask {
            handle: handle.clone(),
        })
    }

    /// Stops the watchdog and waits until it has stopped.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.watchdog_slot().take();
        super::awaitable_none(py, async move {
            if let Some(handle) = handle {
                handle.stop().await;
            }
            Ok(())
        })
    }

    /// One watchdog pass now (what the watchdog does every 10 s): a summary of what it did.
    fn check_active_runs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let report = Watchdog::new(state)
                .run_pass()
                .await
                .map_err(service_error)?;
            let aborted: Vec<serde_json::Value> = report
                .aborted
                .iter()
                .map(|(id, code)| serde_json::json!({"id": id, "code": code}))
                .collect();
            let summary = serde_json::json!({
                "due": report.due, "alive": report.alive, "unreachable": report.unreachable,
                "aborted": aborted, "already_finished": report.already_finished,
                "leased_elsewhere": report.leased_elsewhere, "errors": report.errors,
            });
            Python::attach(|py| Ok(from_json_value(py, &summary)?.unbind()))
        })
    }

    /// Registers a run and claims its queue item; raises `QueueItemAlreadyClaimed` when
    /// another run holds it.
    fn register_run<'py>(
        &self,
        py: Python<'py>,
        active_run: PyActiveRun,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        super::awaitable_none(py, async move {
            registry::register_run(&state, &active_run.inner, state.clock.now())
                .await
                .map_err(service_error)
        })
    }

    fn update_run<'py>(
        &self,
        py: Python<'py>,
        active_run: PyActiveRun,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        super::awaitable_none(py, async move {
            registry::update_run(&state, &active_run.inner, state.clock.now())
                .await
                .map_err(service_error)
        })
    }

    /// The registered run with this id, or None.
    fn get_run<'py>(&self, py: Python<'py>, log_id: String) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let run = registry::get_run(&state, &log_id)
                .await
                .map_err(service_error)?;
            Ok(run.map(|inner| PyActiveRun { inner }))
        })
    }

    /// Releases a run and its queue item; unknown runs are ignored.
    fn unclaim_run<'py>(&self, py: Python<'py>, log_id: String) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        super::awaitable_none(py, async move {
            registry::unclaim_run(&state, &log_id)
                .await
                .map_err(service_error)
        })
    }

    /// Ends a run with `code` and `description`: stored, dequeued, released, rescheduled.
    #[pyo3(signature = (run, code, description, transient=None))]
    fn abort_run<'py>(
        &self,
        py: Python<'py>,
        run: PyActiveRun,
        code: String,
        description: String,
        transient: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state_with_database()?;
        super::awaitable_none(py, async move {
            registry::abort_run(
                &state,
                &run.inner,
                &code,
                &description,
                transient,
                state.clock.now(),
            )
            .await
            .map(|_| ())
            .map_err(service_error)
        })
    }

    /// Stores `result` for `active_run`, deletes its queue row, releases it, announces it and
    /// reschedules the candidate; raises `RunExists` when the run is already stored.
    fn finish_run<'py>(
        &self,
        py: Python<'py>,
        active_run: PyActiveRun,
        result: PyJanitorResult,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state_with_database()?;
        super::awaitable_none(py, async move {
            let mut result = result.inner;
            crate::finish::finish_run(&state, &active_run.inner, &mut result)
                .await
                .map_err(service_error)
        })
    }

    /// Blocks `host` until `retry_after`: a datetime (naive UTC), a number of seconds, or
    /// None for two minutes.
    #[pyo3(signature = (host, retry_after=None))]
    fn rate_limited<'py>(
        &self,
        py: Python<'py>,
        host: String,
        retry_after: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let retry_after = match retry_after {
            None => None,
            Some(value) => Some(if let Ok(at) = value.extract::<NaiveDateTime>() {
                RetryAfter::At(at)
            } else if let Ok(seconds) = value.extract::<i64>() {
                RetryAfter::Seconds(seconds)
            } else if let Ok(delta) = value.extract::<TimeDelta>() {
                RetryAfter::Seconds(delta.num_seconds())
            } else {
                return Err(PyTypeError::new_err(
                    "retry_after must be a naive datetime, a number of seconds, a timedelta or None",
                ));
            }),
        };
        let state = self.state();
        super::awaitable_none(py, async move {
            registry::rate_limited(&state, &host, retry_after, state.clock.now())
                .await
                .map(|_| ())
                .map_err(service_error)
        })
    }

    /// `async for host, until in processor.rate_limited_hosts()`: hosts still blocked.
    fn rate_limited_hosts(&self) -> AsyncRows {
        let state = self.state();
        AsyncRows::new(Box::pin(async move {
            let hosts = registry::rate_limited_hosts(&state, state.clock.now())
                .await
                .map_err(service_error)?;
            Python::attach(|py| {
                hosts
                    .into_iter()
                    .map(|pair| Ok(pair.into_pyobject(py)?.into_any().unbind()))
                    .collect()
            })
        }))
    }

    /// The runner status, as `GET /status` serves it.
    fn status_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let status = registry::status_json(&state, state.clock.now())
                .await
                .map_err(service_error)?;
            Python::attach(|py| Ok(from_json_value(py, &status)?.unbind()))
        })
    }

    fn active_run_count<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            registry::active_run_count(&state)
                .await
                .map_err(service_error)
        })
    }

    /// `(position, wait per active run, wait)` for the item, or `(None, None)` when it is not
    /// queued. The per-run wait is None when nothing runs (the Python divides by zero).
    fn estimate_wait<'py>(
        &self,
        py: Python<'py>,
        codebase: String,
        campaign: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state_with_database()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let found = registry::estimate_wait(&state, &codebase, &campaign)
                .await
                .map_err(service_error)?;
            let delta = |seconds: Option<f64>| seconds.map(timedelta_from_seconds);
            Python::attach(|py| -> PyResult<Py<PyAny>> {
                Ok((
                    found.position,
                    delta(found.wait_time),
                    delta(found.cumulative_wait_time),
                )
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            })
        })
    }

    /// `(item, vcs_info)` the next assignment would start from: not held by a run, not on an
    /// avoided or rate-limited host; `(None, {})` when there is none. `conn` (a pool, the
    /// Python's connection) is read from when given, else the processor's database.
    #[pyo3(signature = (conn=None, codebase=None, campaign=None))]
    fn next_queue_item<'py>(
        &self,
        py: Python<'py>,
        conn: Option<&PyPool>,
        codebase: Option<String>,
        campaign: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = match conn {
            Some(pool) => Arc::new(self.state().with_pool(pool.pool.clone())),
            None => self.state_with_database()?,
        };
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let found = registry::next_queue_item(
                &state,
                codebase.as_deref().filter(|c| !c.is_empty()),
                campaign.as_deref().filter(|c| !c.is_empty()),
                state.clock.now(),
            )
            .await
            .map_err(service_error)?;
            Python::attach(|py| item_with_vcs(py, found))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "QueueProcessor(run_timeout={}, avoid_hosts={:?})",
            self.state().settings.run_timeout_minutes,
            self.state().settings.avoid_hosts
        )
    }
}

/// The Python runner keeps backups in `<backup_directory>/logs` and `<backup_directory>/artifacts`;
/// the two managers given here must be those two directories of one parent.
fn backup_directory(logs: Option<String>, artifacts: Option<String>) -> PyResult<Option<PathBuf>> {
    let parent = |dir: &str, leaf: &str| {
        let path = std::path::Path::new(dir);
        (path.file_name().is_some_and(|name| name == leaf))
            .then(|| path.parent().map(std::path::Path::to_path_buf))
            .flatten()
    };
    match (logs, artifacts) {
        (None, None) => Ok(None),
        (logs, artifacts) => {
            let from_logs = logs.as_deref().map(|dir| parent(dir, "logs"));
            let from_artifacts = artifacts.as_deref().map(|dir| parent(dir, "artifacts"));
            match (from_logs, from_artifacts) {
                (Some(Some(a)), Some(Some(b))) if a == b => Ok(Some(a)),
                (Some(Some(a)), None) | (None, Some(Some(a))) => Ok(Some(a)),
                _ => Err(pyo3::exceptions::PyValueError::new_err(
                    "backup_logfile_manager and backup_artifact_manager must be the directories \
                     <backup_directory>/logs and <backup_directory>/artifacts (as the Python \
                     runner's --backup-directory makes them)",
                )),
            }
        }
    }
}
