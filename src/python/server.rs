//! The whole runner (both apps) inside a Python process: `await serve(args)` with the
//! binary's command-line options, or `await start_server(args)` for a handle that knows its
//! addresses. The server runs on the shared tokio runtime; the event loop stays free.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Parser;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::processor::PyQueueProcessor;
use super::scheduling::PyPool;
use crate::app::{AppState, DatabaseReadiness, Settings, StartupError, StoreLocation};
use crate::cli::{ServeArgs, ServeError, run_server};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::web::Listeners;

/// The binary's serving options, parsed as the binary parses them.
#[derive(Debug, Parser)]
#[command(name = "janitor-runner")]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse(args: Vec<String>) -> PyResult<ServeArgs> {
    let argv = std::iter::once("janitor-runner".to_string()).chain(args);
    ServeOnly::try_parse_from(argv)
        .map(|parsed| parsed.serve)
        .map_err(|e| PyValueError::new_err(e.render().to_string()))
}

type ServerTask = JoinHandle<Result<(), ServeError>>;

/// Starts the server on the shared runtime; resolves once both apps listen. The server stops
/// when `stop` is sent or dropped.
async fn start(
    args: ServeArgs,
) -> PyResult<(
    SocketAddr,
    Option<SocketAddr>,
    oneshot::Sender<()>,
    ServerTask,
)> {
    let (listening_tx, listening_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_server(
            &args,
            move |internal, public| {
                let _ = listening_tx.send((internal, public));
            },
            async move {
                // Sent or dropped: either way, shut down.
                let _ = stop_rx.await;
            },
        )
        .await
    });
    match listening_rx.await {
        Ok((internal, public)) => Ok((internal, public, stop_tx, task)),
        // The server ended before it listened: report why.
        Err(_) => Err(match task.await {
            Ok(Err(error)) => PyRuntimeError::new_err(error.to_string()),
            Ok(Ok(())) => PyRuntimeError::new_err("the server stopped before listening"),
            Err(join) => PyRuntimeError::new_err(join.to_string()),
        }),
    }
}

async fn finished(task: ServerTask) -> PyResult<()> {
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(PyRuntimeError::new_err(error.to_string())),
        Err(join) => Err(PyRuntimeError::new_err(join.to_string())),
    }
}

/// `await serve(args)`: runs the runner with the binary's options (e.g. `["--config",
/// "janitor.conf", "--port", "9911"]`) until the awaiting task is cancelled, which shuts it
/// down gracefully. `DATABASE_URL` and `REDIS_URL` are read as the binary reads them.
#[pyfunction]
#[pyo3(signature = (args=Vec::new()))]
pub fn serve(py: Python<'_>, args: Vec<String>) -> PyResult<Bound<'_, PyAny>> {
    let args = parse(args)?;
    super::awaitable_none(py, async move {
        // Held until the server ends; dropped with this future on cancellation, which stops
        // the server.
        let (_internal, _public, _stop, task) = start(args).await?;
        finished(task).await
    })
}

/// `await start_server(args)`: a running server, once both apps listen (`--port 0` picks a
/// free port; the handle says which).
#[pyfunction]
#[pyo3(signature = (args=Vec::new()))]
pub fn start_server(py: Python<'_>, args: Vec<String>) -> PyResult<Bound<'_, PyAny>> {
    let args = parse(args)?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let (internal, public, stop, task) = start(args).await?;
        Ok(PyServer {
            internal,
            public,
            stop: Mutex::new(Some(stop)),
            task: Arc::new(tokio::sync::Mutex::new(Some(task))),
        })
    })
}

/// A runner serving inside this process. Dropping the handle stops it.
#[pyclass(name = "Server", module = "janitor_runner", frozen)]
pub struct PyServer {
    internal: SocketAddr,
    public: Option<SocketAddr>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Arc<tokio::sync::Mutex<Option<ServerTask>>>,
}

#[pymethods]
impl PyServer {
    /// Base URL of the internal app, e.g. `http://127.0.0.1:9911`.
    #[getter]
    fn internal_url(&self) -> String {
        format!("http://{}", self.internal)
    }

    /// Base URL of the public worker app, or None when `--public-port 0`.
    #[getter]
    fn public_url(&self) -> Option<String> {
        self.public.map(|addr| format!("http://{addr}"))
    }

    /// Shuts down gracefully and waits until the server has ended.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
        self.wait(py)
    }

    /// Waits until the server ends (after `stop`, or a failure).
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let task = self.task.clone();
        super::awaitable_none(py, async move {
            let mut task = task.lock().await;
            match task.take() {
                Some(handle) => finished(handle).await,
                None => Ok(()),
            }
        })
    }

    fn __repr__(&self) -> String {
        format!("Server(internal_url={:?})", self.internal_url())
    }
}

/// The state an app created from Python serves: the processor's (with `config` and
/// `database` in place of its own when given), or a state of its own.
async fn app_state(
    processor: Option<Arc<AppState>>,
    config: Option<PathBuf>,
    database: Option<sqlx::PgPool>,
) -> PyResult<Arc<AppState>> {
    let startup = |error: StartupError| PyRuntimeError::new_err(error.to_string());
    let config = match config {
        Some(path) => Some(
            Config::load(&path)
                .await
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
        ),
        None => None,
    };
    let mut state = match processor {
        Some(state) => match config {
            Some(config) => state.with_config(config).map_err(startup)?,
            None => AppState::clone(&state),
        },
        None => {
            let config = match config {
                Some(config) => config,
                None => Config::parse("", Path::new("<none>"))
                    .map_err(|e| PyValueError::new_err(e.to_string()))?,
            };
            let pool = database.clone().unwrap_or_else(crate::db::absent_pool);
            let mut state = AppState::assemble(
                pool,
                StoreLocation::Postgres,
                config,
                Settings::default(),
                Arc::new(SystemClock),
            )
            .await
            .map_err(startup)?;
            if database.is_none() {
                state.database =
                    DatabaseReadiness::absent("this app was created without a database");
            }
            state
        }
    };
    if let Some(pool) = database {
        state = state.with_pool(pool);
    }
    Ok(Arc::new(state))
}

/// `await create_app(queue_processor, config, database)`: the internal app (the routes of the
/// Python's `create_app`) serving on `host:port` (default: a free port of 127.0.0.1), over the
/// queue processor's store and state. `config` is a janitor.conf path; given, the processor
/// works with it from then on too (as the Python's handlers read the app's). `tracer` is
/// accepted for the Python's signature and not used. Without a database, `/health`, `/ready`,
/// `/metrics`, `/status` and the active runs answer, and the rest answer 503 saying why.
#[pyfunction]
#[pyo3(signature = (
    queue_processor=None, config=None, database=None, tracer=None, *,
    host=String::from("127.0.0.1"), port=0
))]
pub fn create_app<'py>(
    py: Python<'py>,
    queue_processor: Option<Py<PyQueueProcessor>>,
    config: Option<PathBuf>,
    database: Option<&PyPool>,
    tracer: Option<&Bound<'py, PyAny>>,
    host: String,
    port: u16,
) -> PyResult<Bound<'py, PyAny>> {
    let _ = tracer;
    let processor_state = queue_processor.as_ref().map(|qp| qp.get().state());
    let database = database.map(|pool| pool.pool.clone());
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let state = app_state(processor_state, config, database).await?;
        if let Some(qp) = &queue_processor {
            qp.get().replace_state(state.clone());
        }
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {host}:{port}: {e}")))?;
        let internal = listener
            .local_addr()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            internal: listener,
            public: None,
        };
        let task = tokio::spawn(async move {
            crate::web::serve(state, listeners, async move {
                let _ = stop_rx.await;
            })
            .await
            .map_err(ServeError::Serve)
        });
        Ok(PyServer {
            internal,
            public: None,
            stop: Mutex::new(Some(stop_tx)),
            task: Arc::new(tokio::sync::Mutex::new(Some(task))),
        })
    })
}

/// `await migrate(pool)`: brings the database to the runner's schema (creating it, or adopting
/// the Python runner's: what `janitor-runner migrate` does).
#[pyfunction]
pub fn migrate<'py>(py: Python<'py>, pool: &PyPool) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    super::awaitable_none(py, async move {
        crate::db::migrate(&pool)
            .await
            .map(|_| ())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot migrate the database: {e}")))
    })
}
