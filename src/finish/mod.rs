//! Ending a run: storing its result, releasing its queue item and announcing it. Shared by
//! the worker's finish upload, assignment aborts and the watchdog.
//!
//! Entry points: `finish_upload` (a worker's upload, validated before the first write),
//! `finish_run` (a result the runner made), and their parts `store_result` (one transaction)
//! and `announce` (metrics, Redis messages, release). `debian_changes` reads uploaded
//! `.changes` files; `logs` says which uploaded files are logs.

pub mod debian_changes;
pub mod logs;
pub mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

pub use self::upload::{Upload, UploadMemory};
use crate::app::AppState;
use crate::db::candidates::CandidateKey;
use crate::db::{self, ConstraintExt};
use crate::error::{Error, Result};
use crate::events::RESULT_CHANNEL;
use crate::metrics::Metrics;
use crate::models::{ActiveRun, BuilderResult, JanitorResult};
use crate::schedule::after_run::{AfterRun, RescheduleFailed, reschedule_in};
use crate::storage::{Source, Stored};

/// Writes the run row and everything hanging off it (its own change set when it has none),
/// and removes the queue item, inside the caller's transaction. A run id that is already
/// stored gives `Error::RunExists`; a worker name that is not registered is dropped from the
/// result (and the row).
///
/// With `release_claim` (a store whose claims live in the database, see
/// `ActiveRunStore::claims_in_database`) the run's claim is deleted by the same statement
/// and its stored JSON returned, as `ActiveRunStore::unclaim_run_in` would; with
/// `read_candidate` the same statement reads what that candidate's reschedule needs.
pub async fn store_result(
    conn: &mut PgConnection,
    run: &ActiveRun,
    result: &mut JanitorResult,
    release_claim: bool,
    read_candidate: Option<CandidateKey<'_>>,
) -> Result<StoredResult> {
    // A run of no change set gets one of its own, named after it and created by the
    // statement that stores it (again, should that statement be rolled back and repeated).
    if result.change_set.as_deref().is_none_or(str::is_empty) {
        result.change_set = Some(result.log_id.clone());
    }
    let change_set = result.change_set.clone().unwrap_or_default();
    let create_change_set = change_set == result.log_id;
    let tags = result.tags.as_ref().map(|tags| {
        (
            tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            tags.iter().map(|t| t.revision.clone()).collect::<Vec<_>>(),
        )
    });
    let instigated_context = match &run.instigated_context {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let codemod = Some(&result.codemod_result).filter(|v| crate::models::is_truthy(v));
    let details = Some(&result.failure_details).filter(|v| !v.is_null());
    let new_run = db::runs::NewRun {
        id: &result.log_id,
        command: &run.command,
        description: result.description.as_deref(),
        result_code: &result.code,
        start_time: result.start_time,
        finish_time: result.finish_time,
        instigated_context,
        context: result.context.as_deref(),
        main_branch_revision: result.main_branch_revision.as_deref(),
        revision: result.revision.as_deref(),
        result: codemod,
        campaign: &run.campaign,
        vcs_type: result.vcs_type.as_deref(),
        branch_url: result.branch_url.as_deref(),
        logfilenames: &result.logfilenames,
        value: result.value,
        worker: result.worker_name.as_deref(),
        worker_link: run.worker_link.as_deref(),
        tags,
        subpath: result.subpath.as_deref(),
        failure_stage: result.failure_stage.as_deref(),
        failure_details: details,
        target_branch_url: result.target_branch_url.as_deref(),
        failure_transient: result.transient,
        resume_from: result.resume_from.as_deref(),
        change_set: &change_set,
        create_change_set,
        codebase: &result.codebase,
        worker_must_be_registered: false,
        queue_id: Some(run.queue_id),
        release_claim: release_claim.then_some(run.log_id.as_str()),
        read_candidate,
    };
    let inserted = db::runs::insert(conn, &new_run)
        .await
        .on_constraint(|name| match name {
            "run_pkey" => Some(Error::RunExists(result.log_id.clone())),
            "run_worker_fkey" => Some(Error::BadRequest(format!(
                "worker {:?} is not a registered worker",
                result.worker_name.as_deref().unwrap_or_default()
            ))),
            "run_check" => Some(Error::BadRequest("finish_time is before start_time".into())),
            "run_check1" => Some(Error::BadRequest(
                "nothing-new-to-do needs a run to resume from".into(),
            )),
            _ => None,
        })?;
    if inserted.worker.is_none()
        && let Some(unregistered) = result.worker_name.take()
    {
        // Internal-app workers name themselves; a name the `worker` table lacks is stored as
        // NULL rather than failing the foreign key, retry after retry.
        tracing::warn!(run_id = %result.log_id, worker = %unregistered, "stored the run of an unregistered worker without its worker name");
    }
    if let Some(branches) = &result.branches {
        db::runs::insert_result_branches(conn, &result.log_id, branches).await?;
    }
    if let Some(BuilderResult::Debian(debian)) = &result.builder_result
        && debian.changes_filenames.is_some()
    {
        db::runs::insert_debian_build(conn, &result.log_id, debian).await?;
    }
    Ok(StoredResult {
        released_claim: inserted
            .released_claim
            .as_deref()
            .map(crate::state::parse_run)
            .transpose()?,
        requeue: inserted.requeue,
    })
}

/// What storing a result gave back besides the row.
#[derive(Debug)]
pub struct StoredResult {
    /// The released claim's JSON, when the claim was released with the run and registered.
    pub released_claim: Option<Value>,
    /// What the reschedule of the candidate asked for needs, when it exists.
    pub requeue: Option<db::runs::RequeueRead>,
}

/// After the result is committed: metrics, the `result` message, the run released and the
/// `queue` status message. `registered` says whether the run was in the active-run store.
pub async fn announce(
    state: &AppState,
    run: &ActiveRun,
    result: &JanitorResult,
    registered: bool,
) -> Result<()> {
    record_result_metrics(&state.metrics, result);
    // Without Redis nobody can be subscribed, so the result's JSON is not built for nothing.
    if state.events.is_enabled() {
        state
            .events
            .publish(RESULT_CHANNEL, &result.to_json())
            .await;
    }
    if registered {
        crate::registry::unclaim_run(state, &run.log_id).await?;
    }
    state.status_announcer.announce();
    state
        .metrics
        .job_last_success_unixtime
        .set(state.clock.now().and_utc().timestamp() as f64);
    Ok(())
}

/// What rescheduling `run`'s candidate after `result` asks for.
pub fn after_run(run: &ActiveRun, result: &JanitorResult) -> AfterRun {
    AfterRun {
        codebase: result.codebase.clone(),
        campaign: result.campaign.clone(),
        change_set: run.change_set.clone(),
        context: result.context.clone(),
    }
}

/// When a finished run's candidate goes back on the queue (see `schedule::after_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// In the transaction that stores the run: a worker's finish.
    WithTheRun,
    /// In the background after the commit: runs the runner ends itself.
    Afterwards,
}

fn record_result_metrics(metrics: &Metrics, result: &JanitorResult) {
    metrics
        .result
        .with_label_values(&[result.campaign.as_str(), result.code.as_str()])
        .inc();
    let duration: TimeDelta = result.duration();
    metrics
        .build_duration
        .with_label_values(&[result.campaign.as_str()])
        .observe(crate::time::seconds(&duration));
}

/// Stores a result, announces it and reschedules its candidate in the background: the whole
/// of finishing a registered run the runner ends itself. A run already stored is released
/// from the store and reported as `Error::RunExists`.
pub async fn finish_run(
    state: &AppState,
    run: &ActiveRun,
    result: &mut JanitorResult,
) -> Result<()> {
    finish_run_requeueing(state, run, result, Requeue::Afterwards).await
}

/// [`finish_run`], with the candidate rescheduled as `requeue` says.
pub async fn finish_run_requeueing(
    state: &AppState,
    run: &ActiveRun,
    result: &mut JanitorResult,
    requeue: Requeue,
) -> Result<()> {
    store_and_announce(state, run, result, requeue, false).await
}

/// [`finish_run_requeueing`]; `remembered` says the run's JSON came from this process's copy,
/// so the claim the run's statement releases must still have been there.
#[tracing::instrument(
    name = "finish_run",
    skip_all,
    fields(run_id = %run.log_id, result_code = %result.code, campaign = %run.campaign)
)]
async fn store_and_announce(
    state: &AppState,
    run: &ActiveRun,
    result: &mut JanitorResult,
    requeue: Requeue,
    remembered: bool,
) -> Result<()> {
    // The claim goes with the same commit that stores the run: a process killed in between
    // cannot leave a stored run still registered as out with its worker.
    let release_with_run = state.store.claims_in_database();
    let after = after_run(run, result);
    let read_candidate = (requeue == Requeue::WithTheRun).then(|| after.candidate_key());
    let mut conn = state.warm_connections.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut stored =
        match store_result(&mut tx, run, result, release_with_run, read_candidate).await {
            Ok(stored) => stored,
            Err(failed) => {
                let rolled_back = tx.rollback().await.is_ok();
                return Err(release_if_stored(state, conn, rolled_back, run, failed).await);
            }
        };
    if remembered && release_with_run && stored.released_claim.is_none() {
        // Released by another process since: answer as reading the store would have.
        tx.rollback().await?;
        conn.park();
        state.own_runs.forget(&run.log_id);
        return Err(no_longer_active(state, &run.log_id).await);
    }
    if requeue == Requeue::WithTheRun
        && let Err(RescheduleFailed) =
            reschedule_in(&mut tx, state.clock.now(), &after, stored.requeue.take()).await
    {
        // The failed statement took the transaction with it: the run is stored again
        // without its reschedule, as a failing reschedule must not fail the finish.
        tx.rollback().await?;
        tx = conn.begin().await?;
        stored = match store_result(&mut tx, run, result, release_with_run, None).await {
            Ok(stored) => stored,
            Err(failed) => {
                let rolled_back = tx.rollback().await.is_ok();
                return Err(release_if_stored(state, conn, rolled_back, run, failed).await);
            }
        };
    }
    tx.commit().await?;
    conn.park();
    state.own_runs.forget(&run.log_id);
    let registered = if release_with_run {
        if let Some(stored) = stored.released_claim {
            state.store.released_with_run(&run.log_id, &stored);
            crate::registry::count_release(state, &stored);
        }
        false
    } else {
        true
    };
    state.queue_upkeep.deleted_one();
    if requeue == Requeue::Afterwards {
        state.rescheduler.spawn(after);
    }
    announce(state, run, result, registered).await
}

/// The error of a [`store_result`], its transaction rolled back (before anything else: the
/// failed statement's locks go with it; a rollback that fails takes the connection, and the
/// locks, with it). A run found already stored is released from the store once the
/// connection is let go (no request holds two).
async fn release_if_stored(
    state: &AppState,
    conn: crate::db::warm::WarmConnection<'_>,
    rolled_back: bool,
    run: &ActiveRun,
    failed: Error,
) -> Error {
    if rolled_back {
        conn.park();
    } else {
        drop(conn);
    }
    match failed {
        Error::RunExists(id) => match crate::registry::unclaim_run(state, &run.log_id).await {
            Ok(_) => Error::RunExists(id),
            Err(error) => error,
        },
        other => other,
    }
}

/// Upload part names must be plain file names: not empty, not `.`/`..`, no `/`, `\` or NUL,
/// at most 255 bytes.
pub fn check_upload_filename(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains(['/', '\\', '\0']);
    if bad {
        return Err(Error::BadRequest(format!("Invalid filename {name:?}")));
    }
    Ok(())
}

/// What the finish routes answer.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The run id (log id).
    pub id: String,
    /// Every uploaded file's name, in upload order.
    pub filenames: Vec<String>,
    /// The log files among them, in name order.
    pub logs: Vec<String>,
    /// The artifacts stored; `None` without a build result, or when storing them failed.
    pub artifacts: Option<Vec<String>>,
    /// The result as stored.
    pub result: JanitorResult,
}

impl Finished {
    /// The JSON answer of the finish routes.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "filenames": self.filenames,
            "logs": self.logs,
            "artifacts": self.artifacts,
            "result": self.result.to_json(),
        })
    }
}

/// An active run's stored JSON, as a finish found it.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The JSON the active-run store holds for the run.
    pub data: Arc<Value>,
    /// Taken from this process's copy (`AppState::own_runs`), not read back from the store:
    /// the statement that stores the run then checks that the claim is still there.
    pub remembered: bool,
}

/// The stored JSON of the active run a finish is for: this process's copy when it handed the
/// run out (and the claims live in the database), else the store's. A run no longer active
/// whose result is stored (by an earlier try of the same upload, or by the watchdog's abort)
/// is `Error::RunExists`, so a retrying worker learns it can stop; any other is `NotFound`.
pub async fn registered_run(state: &AppState, run_id: &str) -> Result<Registered> {
    if state.store.claims_in_database()
        && let Some(data) = state.own_runs.get(run_id)
    {
        return Ok(Registered {
            data,
            remembered: true,
        });
    }
    if let Some(data) = state.store.get_run(run_id).await? {
        return Ok(Registered {
            data: Arc::new(data),
            remembered: false,
        });
    }
    Err(no_longer_active(state, run_id).await)
}

/// What a finish for a run that is not registered gets: `RunExists` if its result is stored,
/// else `NotFound`.
async fn no_longer_active(state: &AppState, run_id: &str) -> Error {
    match db::runs::summary(&state.pool, run_id).await {
        Ok(Some(_)) => Error::RunExists(run_id.to_string()),
        Ok(None) => Error::NotFound(format!("no such run {run_id}")),
        Err(error) => error.into(),
    }
}

/// The worker's finish upload for the active run `registered` (as [`registered_run`] read it
/// before the upload was received, as the Python does): validate everything, then store logs,
/// artifacts and the run. A run stored meanwhile (the watchdog's abort, a concurrent upload) is
/// caught when the run is stored, as `Error::RunExists`.
#[tracing::instrument(
    name = "finish",
    skip_all,
    fields(
        run_id = run_id,
        files = upload.filenames.len(),
        result_code = tracing::field::Empty,
        outcome = tracing::field::Empty
    )
)]
pub async fn finish_upload(
    state: &AppState,
    run_id: &str,
    registered: &Registered,
    upload: Upload,
) -> Result<Finished> {
    let started = std::time::Instant::now();
    let finished = take_upload(state, run_id, registered, upload).await;
    let outcome = match &finished {
        Ok(_) => "stored",
        Err(Error::RunExists(_) | Error::Conflict(_)) => "conflict",
        Err(Error::BadRequest(_) | Error::NotFound(_)) => "rejected",
        Err(_) => "error",
    };
    let span = tracing::Span::current();
    span.record("outcome", outcome);
    if let Ok(finished) = &finished {
        span.record("result_code", finished.result.code.as_str());
    }
    state
        .metrics
        .finish_duration
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    finished
}

/// What [`finish_upload`] does, unmeasured.
async fn take_upload(
    state: &AppState,
    run_id: &str,
    registered: &Registered,
    upload: Upload,
) -> Result<Finished> {
    let run = ActiveRun::from_json(&registered.data)
        .map_err(|e| Error::Conflict(format!("stored run {run_id} is unreadable: {e}")))?;
    let worker = crate::models::WorkerResult::from_json(&upload.result)
        .map_err(|e| Error::BadRequest(format!("result.json: {e}")))?;
    let logs: Vec<String> = upload
        .filenames
        .iter()
        .filter(|name| crate::is_log_filename(name))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let now = state.clock.now();
    let mut result = JanitorResult::from_worker_result(&run, worker, logs.clone(), now);
    if result.finish_time < result.start_time {
        return Err(Error::bad_request(
            "result.json: finish_time is before start_time",
        ));
    }
    if result.code == "nothing-new-to-do" && result.resume_from.is_none() {
        return Err(Error::bad_request(
            "result.json: nothing-new-to-do needs a run to resume from",
        ));
    }
    if let Some(BuilderResult::Debian(debian)) = &mut result.builder_result {
        crate::finish::debian_changes::complete_from_files(debian, &upload.files)
            .await
            .map_err(|e| Error::BadRequest(e.to_string()))?;
    }
    import_logs(state, &run, &result, &upload.files).await?;
    let artifacts = match &result.builder_result {
        None => None,
        Some(builder) => {
            let names = builder.artifact_filenames();
            let stored = match uploaded(&upload.files, &names) {
                Ok(files) if files.is_empty() => Ok(Stored::Primary),
                Ok(files) => state.storage.store_artifacts(run_id, &files).await,
                Err(missing) => Err(missing),
            };
            match stored {
                Ok(_) => Some(names),
                Err(error) => {
                    state.metrics.artifact_upload_failed.inc();
                    result.code = "artifact-upload-failed".to_string();
                    result.description = Some(error.to_string());
                    None
                }
            }
        }
    };
    store_and_announce(
        state,
        &run,
        &mut result,
        Requeue::WithTheRun,
        registered.remembered,
    )
    .await?;
    Ok(Finished {
        id: run_id.to_string(),
        filenames: upload.filenames,
        logs,
        artifacts,
        result,
    })
}

/// Stores each log under the active run's codebase (the backup directory takes over when
/// the primary store fails).
async fn import_logs(
    state: &AppState,
    run: &ActiveRun,
    result: &JanitorResult,
    files: &BTreeMap<String, Source>,
) -> Result<()> {
    let imports = result.logfilenames.iter().map(|name| async move {
        // The log names come from the uploaded names, so each is there.
        let Some(source) = files.get(name) else {
            return Err(Error::Storage(format!("log {name} was not uploaded")));
        };
        let stored = state
            .storage
            .import_log(
                run.codebase(),
                &run.log_id,
                source,
                name,
                result.finish_time,
            )
            .await;
        match stored {
            Ok(Stored::Primary) => state.metrics.logfile_uploads.inc(),
            Ok(Stored::Backup) => state.metrics.primary_logfile_upload_failed.inc(),
            Err(error) => {
                state.metrics.primary_logfile_upload_failed.inc();
                return Err(Error::Storage(error.to_string()));
            }
        }
        Ok(())
    });
    futures::future::try_join_all(imports).await?;
    Ok(())
}

/// The uploaded files `names` lists, in its order; an artifact the result names that was not
/// uploaded is an error, as a missing file was when it was copied.
fn uploaded(
    files: &BTreeMap<String, Source>,
    names: &[String],
) -> std::result::Result<Vec<(String, Source)>, crate::storage::StorageError> {
    names
        .iter()
        .map(|name| match files.get(name) {
            Some(source) => Ok((name.clone(), source.clone())),
            None => Err(crate::storage::StorageError::Io {
                path: name.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not uploaded"),
            }),
        })
        .collect()
}
