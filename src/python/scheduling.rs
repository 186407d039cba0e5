//! The database-backed pieces for Python: a connection pool made from a DSN (an asyncpg
//! connection cannot cross into Rust), the scheduling functions of `janitor.schedule` and
//! the estimates, all awaitable from asyncio. The futures run on the one shared tokio
//! runtime of `pyo3-async-runtimes`; Python waits without holding the GIL.

use chrono::{NaiveDateTime, TimeDelta};
use pyo3::exceptions::PyAssertionError;
use pyo3::prelude::*;
use sqlx::PgPool;

use super::errors::{database_error, schedule_error};
use crate::schedule::Micros;
use crate::schedule::engine::{
    ControlRequest, RegularRequest, ScheduleRequest, Scheduled, do_schedule, do_schedule_control,
    do_schedule_regular, estimate_duration, estimate_success_probability_and_duration,
};

/// A PostgreSQL connection pool (what `await janitor_runner.connect(dsn)` gives).
#[pyclass(name = "Pool", module = "janitor_runner", frozen)]
pub struct PyPool {
    pub(crate) pool: PgPool,
}

#[pymethods]
impl PyPool {
    /// Closes every connection; awaitable.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pool = self.pool.clone();
        super::awaitable_none(py, async move {
            pool.close().await;
            Ok(())
        })
    }
}

fn timedelta(micros: Micros) -> TimeDelta {
    TimeDelta::microseconds(micros.0)
}

pub(super) fn micros(delta: TimeDelta) -> Micros {
    Micros(delta.num_microseconds().unwrap_or(i64::MAX))
}

/// `(offset, estimated_duration, queue_id, bucket)`, the Python return value.
type ScheduleResult = (f64, TimeDelta, i64, String);

fn result(scheduled: Scheduled) -> ScheduleResult {
    (
        scheduled.offset,
        timedelta(scheduled.estimated_duration),
        scheduled.queue_id,
        scheduled.bucket,
    )
}

/// The current UTC time: these functions have no runner state, so the system clock.
fn utc_now() -> NaiveDateTime {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// `await connect(dsn, max_connections=10)`: a pool for the other functions.
#[pyfunction]
#[pyo3(signature = (dsn, max_connections=10))]
pub fn connect(py: Python<'_>, dsn: String, max_connections: u32) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let pool = crate::db::connect(&dsn, max_connections)
            .await
            .map_err(database_error)?;
        Ok(PyPool { pool })
    })
}

/// `do_schedule_regular`, as in `janitor.schedule` (the clock is the current UTC time).
#[pyfunction(name = "do_schedule_regular")]
#[pyo3(signature = (
    pool, *, codebase, campaign, command=None, candidate_value=None, success_chance=None,
    normalized_codebase_value=None, requester=None, default_offset=0.0, context=None,
    change_set=None, dry_run=false, refresh=false, bucket=None
))]
#[allow(clippy::too_many_arguments)]
pub fn py_do_schedule_regular<'py>(
    py: Python<'py>,
    pool: &PyPool,
    codebase: String,
    campaign: String,
    command: Option<String>,
    candidate_value: Option<i64>,
    success_chance: Option<f64>,
    normalized_codebase_value: Option<f64>,
    requester: Option<String>,
    default_offset: f64,
    context: Option<String>,
    change_set: Option<String>,
    dry_run: bool,
    refresh: bool,
    bucket: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        let scheduled = do_schedule_regular(
            &mut conn,
            utc_now(),
            RegularRequest {
                codebase: &codebase,
                campaign: &campaign,
                command,
                candidate_value,
                success_chance,
                normalized_codebase_value,
                requester: requester.as_deref(),
                default_offset,
                context,
                change_set: change_set.as_deref(),
                dry_run,
                refresh,
                bucket: bucket.as_deref(),
            },
        )
        .await
        .map_err(schedule_error)?;
        Ok(result(scheduled))
    })
}

/// `do_schedule`: to the head of `bucket` (offset −1 unless given), context cleared.
#[pyfunction(name = "do_schedule")]
#[pyo3(signature = (
    pool, campaign, codebase, bucket=None, *, change_set=None, offset=None, refresh=false,
    requester=None, estimated_duration=None, command=None
))]
#[allow(clippy::too_many_arguments)]
pub fn py_do_schedule<'py>(
    py: Python<'py>,
    pool: &PyPool,
    campaign: String,
    codebase: String,
    bucket: Option<String>,
    change_set: Option<String>,
    offset: Option<f64>,
    refresh: bool,
    requester: Option<String>,
    estimated_duration: Option<TimeDelta>,
    command: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        let scheduled = do_schedule(
            &mut conn,
            ScheduleRequest {
                campaign: &campaign,
                codebase: &codebase,
                bucket: bucket.as_deref(),
                change_set: change_set.as_deref(),
                offset,
                refresh,
                requester: requester.as_deref(),
                estimated_duration: estimated_duration.map(micros),
                command,
            },
        )
        .await
        .map_err(schedule_error)?;
        Ok(result(scheduled))
    })
}

/// `do_schedule_control`: `brz up [--revision=R]` in the `control` campaign.
#[pyfunction(name = "do_schedule_control")]
#[pyo3(signature = (
    pool, codebase, *, change_set=None, main_branch_revision=None, offset=None, refresh=false,
    bucket=None, requester=None, estimated_duration=None
))]
#[allow(clippy::too_many_arguments)]
pub fn py_do_schedule_control<'py>(
    py: Python<'py>,
    pool: &PyPool,
    codebase: String,
    change_set: Option<String>,
    main_branch_revision: Option<Vec<u8>>,
    offset: Option<f64>,
    refresh: bool,
    bucket: Option<String>,
    requester: Option<String>,
    estimated_duration: Option<TimeDelta>,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    // Python decodes the revision bytes as UTF-8 and fails otherwise.
    let revision = main_branch_revision
        .map(String::from_utf8)
        .transpose()
        .map_err(|e| pyo3::exceptions::PyUnicodeDecodeError::new_err(e.to_string()))?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        let scheduled = do_schedule_control(
            &mut conn,
            ControlRequest {
                codebase: &codebase,
                change_set: change_set.as_deref(),
                main_branch_revision: revision.as_deref(),
                offset,
                refresh,
                bucket: bucket.as_deref(),
                requester: requester.as_deref(),
                estimated_duration: estimated_duration.map(micros),
            },
        )
        .await
        .map_err(schedule_error)?;
        Ok(result(scheduled))
    })
}

/// `estimate_duration(pool, codebase, campaign)`: the average duration of the pair's runs,
/// else the codebase's, else the campaign's, else 15 s.
#[pyfunction(name = "estimate_duration")]
pub fn py_estimate_duration<'py>(
    py: Python<'py>,
    pool: &PyPool,
    codebase: String,
    campaign: String,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        let duration = estimate_duration(&mut conn, &codebase, &campaign)
            .await
            .map_err(schedule_error)?;
        Ok(timedelta(duration))
    })
}

/// `estimate_success_probability_and_duration(pool, codebase, campaign, context=None)`:
/// `(probability_of_success, estimated_duration, total_previous_runs)`.
#[pyfunction(name = "estimate_success_probability_and_duration")]
#[pyo3(signature = (pool, codebase, campaign, context=None))]
pub fn py_estimate_success_probability_and_duration<'py>(
    py: Python<'py>,
    pool: &PyPool,
    codebase: String,
    campaign: String,
    context: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        let estimate = estimate_success_probability_and_duration(
            &mut conn,
            &codebase,
            &campaign,
            context.as_deref(),
            utc_now(),
        )
        .await
        .map_err(schedule_error)?;
        Ok((
            estimate.probability_of_success,
            timedelta(estimate.duration),
            estimate.total_previous_runs,
        ))
    })
}

/// `bulk_schedule(pool, campaign=None, codebases=None, dry_run=False)`: the bulk scheduler of
/// `janitor.schedule`'s command; the queue rows written (or, with `dry_run`, that would be),
/// in candidate order, as dicts (`codebase`, `campaign`, `bucket`, `priority`, `command`,
/// `context`, `estimated_duration` (a timedelta), `requester`).
#[pyfunction(name = "bulk_schedule")]
#[pyo3(signature = (pool, *, campaign=None, codebases=None, dry_run=false))]
pub fn py_bulk_schedule<'py>(
    py: Python<'py>,
    pool: &PyPool,
    campaign: Option<String>,
    codebases: Option<Vec<String>>,
    dry_run: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    let options = crate::schedule::bulk::BulkOptions {
        campaign,
        codebases: codebases.unwrap_or_default(),
        dry_run,
        ..Default::default()
    };
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let summary = crate::schedule::bulk::bulk_schedule(&pool, utc_now(), &options, |_, _| {})
            .await
            .map_err(schedule_error)?;
        Python::attach(|py| -> PyResult<Py<PyAny>> {
            let rows = pyo3::types::PyList::empty(py);
            for row in summary.rows {
                let dict = pyo3::types::PyDict::new(py);
                dict.set_item("codebase", row.codebase)?;
                dict.set_item("campaign", row.campaign)?;
                dict.set_item("bucket", row.bucket)?;
                dict.set_item("priority", row.priority)?;
                dict.set_item("command", row.command)?;
                dict.set_item("context", row.context)?;
                dict.set_item(
                    "estimated_duration",
                    timedelta(Micros(row.estimated_duration_us)),
                )?;
                dict.set_item("requester", row.requester)?;
                rows.append(dict)?;
            }
            Ok(rows.into_any().unbind())
        })
    })
}

/// `calculate_offset`, as in `janitor.schedule`: the offset a candidate is queued at. The
/// Python's assertions raise `AssertionError` here too; `success_chance` is accepted and, as
/// there, does not change the result.
#[pyfunction(name = "calculate_offset")]
#[pyo3(signature = (
    *, estimated_duration, normalized_codebase_value, estimated_probability_of_success,
    candidate_value, total_previous_runs, success_chance=None
))]
pub fn py_calculate_offset(
    estimated_duration: TimeDelta,
    normalized_codebase_value: Option<f64>,
    estimated_probability_of_success: f64,
    candidate_value: Option<f64>,
    total_previous_runs: u32,
    success_chance: Option<f64>,
) -> PyResult<f64> {
    let _ = success_chance;
    let candidate_value = match candidate_value {
        Some(value) if value.fract() != 0.0 || !value.is_finite() => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "candidate_value {value} is not a whole number (candidate values are integers)"
            )));
        }
        Some(value) => Some(value as i64),
        None => None,
    };
    crate::schedule::offset::calculate_offset(&crate::schedule::offset::OffsetInputs {
        estimated_duration: micros(estimated_duration),
        normalized_codebase_value,
        probability_of_success: estimated_probability_of_success,
        candidate_value,
        total_previous_runs,
    })
    .map_err(|error| PyAssertionError::new_err(error.to_string()))
}
