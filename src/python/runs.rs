//! `store_run` and `store_change_set`, as `janitor.runner` has them, and `store_review` of
//! `janitor.review`, on a pool rather than an asyncpg connection.

use chrono::NaiveDateTime;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use serde_json::Value;
use sqlx::PgPool;

use super::errors::{database_error, review_error};
use super::scheduling::PyPool;
use crate::db::runs::{NewRun, ensure_change_set, insert, insert_result_branches};
use crate::models::Branch;
use crate::review::{Review, store_review as store_review_in_db};

/// `(role, remote_name, base_revision, revision)`, the revisions as bytes.
type ResultBranch<'py> = (
    String,
    Option<String>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// A revision as Python passes it: bytes (decoded as UTF-8, as the Python does) or str.
fn revision(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(value) if value.is_none() => Ok(None),
        Some(value) => match value.extract::<Vec<u8>>() {
            Ok(bytes) if value.is_instance_of::<pyo3::types::PyBytes>() => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| PyValueError::new_err(format!("revision is not UTF-8: {e}"))),
            _ => value.extract::<String>().map(Some),
        },
    }
}

/// A JSON column: `None` and empty values are stored as NULL, as `x if x else None` does.
fn json_column(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Value>> {
    match value {
        None => Ok(None),
        Some(value) if value.is_none() || !value.is_truthy()? => Ok(None),
        Some(value) => super::any_to_json(Some(value)).map(Some),
    }
}

/// `await store_change_set(pool, name, campaign)`: the change set row, if it is not there.
#[pyfunction]
pub fn store_change_set<'py>(
    py: Python<'py>,
    pool: &PyPool,
    name: String,
    campaign: String,
) -> PyResult<Bound<'py, PyAny>> {
    let pool = pool.pool.clone();
    super::awaitable_none(py, async move {
        let mut conn = pool.acquire().await.map_err(database_error)?;
        ensure_change_set(&mut conn, &name, &campaign)
            .await
            .map_err(database_error)
    })
}

/// `await store_run(pool, *, run_id, codebase, ...)`: one `run` row and its result branches in
/// one transaction, with the Python's parameters. `change_set` defaults to the run id, as the
/// runner itself stores runs without one.
#[pyfunction]
#[pyo3(signature = (
    pool, *, run_id, codebase, vcs_type, branch_url, start_time, finish_time, command,
    description, instigated_context, context, main_branch_revision, result_code, revision,
    codemod_result, campaign, logfilenames, value, worker_name=None, subpath=Some("".to_string()),
    result_branches=None, result_tags=None, resume_from=None, failure_details=None,
    failure_stage=None, target_branch_url=None, change_set=None, failure_transient=None
))]
#[allow(clippy::too_many_arguments)]
pub fn store_run<'py>(
    py: Python<'py>,
    pool: &PyPool,
    run_id: String,
    codebase: String,
    vcs_type: Option<String>,
    branch_url: Option<String>,
    start_time: NaiveDateTime,
    finish_time: NaiveDateTime,
    command: String,
    description: Option<String>,
    instigated_context: Option<&Bound<'py, PyAny>>,
    context: Option<String>,
    main_branch_revision: Option<&Bound<'py, PyAny>>,
    result_code: String,
    revision: Option<&Bound<'py, PyAny>>,
    codemod_result: Option<&Bound<'py, PyAny>>,
    campaign: String,
    logfilenames: Vec<String>,
    value: Option<i64>,
    worker_name: Option<String>,
    subpath: Option<String>,
    result_branches: Option<Vec<ResultBranch<'py>>>,
    result_tags: Option<Vec<(String, Bound<'py, PyAny>)>>,
    resume_from: Option<String>,
    failure_details: Option<&Bound<'py, PyAny>>,
    failure_stage: Option<String>,
    target_branch_url: Option<String>,
    change_set: Option<String>,
    failure_transient: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let main_branch_revision = self::revision(main_branch_revision)?;
    let revision = self::revision(revision)?;
    let result = json_column(codemod_result)?;
    let failure_details = json_column(failure_details)?;
    let instigated_context = match instigated_context {
        Some(value) if !value.is_none() => Some(value.str()?.to_string()),
        _ => None,
    };
    let branches = result_branches_from(result_branches)?;
    let tags = result_tags_from(result_tags)?;
    let pool = pool.pool.clone();
    super::awaitable_none(py, async move {
        let change_set = change_set.unwrap_or_else(|| run_id.clone());
        let run = NewRun {
            id: &run_id,
            command: &command,
            description: description.as_deref(),
            result_code: &result_code,
            start_time,
            finish_time,
            instigated_context,
            context: context.as_deref(),
            main_branch_revision: main_branch_revision.as_deref(),
            revision: revision.as_deref(),
            result: result.as_ref(),
            campaign: &campaign,
            vcs_type: vcs_type.as_deref(),
            branch_url: branch_url.as_deref(),
            logfilenames: &logfilenames,
            value,
            worker: worker_name.as_deref(),
            worker_link: None,
            tags,
            subpath: subpath.as_deref(),
            failure_stage: failure_stage.as_deref(),
            failure_details: failure_details.as_ref(),
            target_branch_url: target_branch_url.as_deref(),
            failure_transient,
            resume_from: resume_from.as_deref(),
            change_set: &change_set,
            create_change_set: true,
            codebase: &codebase,
            worker_must_be_registered: true,
            queue_id: None,
            release_claim: None,
            read_candidate: None,
        };
        insert_run(&pool, &run, &branches).await
    })
}

/// The result branches, with revisions as text; no role twice.
fn result_branches_from(result_branches: Option<Vec<ResultBranch<'_>>>) -> PyResult<Vec<Branch>> {
    let branches = result_branches
        .unwrap_or_default()
        .into_iter()
        .map(|(role, remote_name, base, tip)| {
            Ok(Branch {
                role,
                remote_name,
                base_revision: revision(base.as_ref())?,
                revision: revision(tip.as_ref())?,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut roles: Vec<&str> = branches.iter().map(|b| b.role.as_str()).collect();
    roles.sort_unstable();
    if roles.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(PyValueError::new_err(format!(
            "Duplicate result branches: {roles:?}"
        )));
    }
    Ok(branches)
}

/// The tags as the `run` row keeps them: names and revisions side by side.
fn result_tags_from(
    result_tags: Option<Vec<(String, Bound<'_, PyAny>)>>,
) -> PyResult<Option<(Vec<String>, Vec<String>)>> {
    Ok(result_tags
        .map(|tags| {
            tags.into_iter()
                .map(|(name, tip)| {
                    let tip = revision(Some(&tip))?.unwrap_or_default();
                    Ok((name, tip))
                })
                .collect::<PyResult<Vec<_>>>()
        })
        .transpose()?
        .map(|tags| tags.into_iter().unzip()))
}

/// The change set if missing, the run and its result branches: all or nothing.
async fn insert_run(pool: &PgPool, run: &NewRun<'_>, branches: &[Branch]) -> PyResult<()> {
    let mut tx = pool.begin().await.map_err(database_error)?;
    insert(&mut tx, run).await.map_err(database_error)?;
    insert_result_branches(&mut tx, run.id, branches)
        .await
        .map_err(database_error)?;
    tx.commit().await.map_err(database_error)
}

/// `store_review`, as `janitor.review` has it: `session` (an aiohttp session there) is
/// accepted and not used, the runner is reached with the runner's own HTTP client.
#[pyfunction]
#[pyo3(signature = (conn, session, runner_url, run_id, verdict, comment, reviewer, is_qa_reviewer))]
#[allow(clippy::too_many_arguments)]
pub fn store_review<'py>(
    py: Python<'py>,
    conn: &PyPool,
    session: Option<&Bound<'py, PyAny>>,
    runner_url: String,
    run_id: String,
    verdict: String,
    comment: Option<String>,
    reviewer: Option<String>,
    is_qa_reviewer: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let _ = session;
    let pool = conn.pool.clone();
    super::awaitable_none(py, async move {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        let review = Review {
            run_id: &run_id,
            verdict: &verdict,
            comment: comment.as_deref(),
            reviewer: reviewer.as_deref(),
            is_qa_reviewer,
        };
        store_review_in_db(&pool, &http, &runner_url, review)
            .await
            .map_err(review_error)
    })
}
