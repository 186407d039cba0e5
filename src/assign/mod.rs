//! Assignment: choose the next queue item, claim it atomically, and describe the work to the
//! worker in the JSON `janitor-worker` accepts.
//!
//! Items that cannot yield a valid assignment (unknown campaign, no VCS URL, a VCS the
//! worker does not support, no store for it, a broken build configuration or command) are
//! claimed and finished with a result code, without counting an active run, and the next
//! item is tried.
//!
//! The next row is read and then claimed by two statements, each committed on its own
//! (no transaction spans them); the claim re-reads the row, and the assigners of one process
//! take turns to read, stepping over the rows the others have read and not yet claimed
//! (`in_hand`).
//!
//! Entry point: [`assign`] (with [`Mode::Peek`] for the read-only peek). Steps: `plan` (the
//! checks, the assignment JSON), the claim, `probe` (upstream and resume branches); beside
//! them the builders (`builder`), branch opening (`upstream`), the VCS store (`vcs_store`),
//! queue commands (`command`), committer variables (`committer`) and branch URLs
//! (`branch_url`).

pub mod branch_url;
pub mod builder;
pub mod command;
pub mod committer;
mod in_hand;
mod plan;
mod probe;
pub mod upstream;
pub mod vcs_store;

use std::collections::HashSet;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use self::in_hand::HeldItem;
pub use self::in_hand::ItemsInHand;
use self::plan::{Plan, Unassignable, build_config, describe, plan};
use self::probe::{TurnedDown, probe, turn_down};
use self::upstream::RateLimited;
use crate::app::AppState;
use crate::db::queue::{Claimed, ExcludedHosts};
use crate::error::{Error, Result};
use crate::models::{ActiveRun, BackchannelInfo, JanitorResult};
use crate::state::StoreError;

/// What a worker asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssignRequest {
    /// The worker's name (on the public API, the authenticated worker's).
    pub worker: Option<String>,
    /// A link to the worker's own page for this run, shown with the run.
    pub worker_link: Option<String>,
    /// How to reach the worker while the run is out.
    pub backchannel: BackchannelInfo,
    /// Only hand out an item for this codebase.
    pub codebase: Option<String>,
    /// Only hand out an item for this campaign.
    pub campaign: Option<String>,
}

impl AssignRequest {
    /// The assign request body. Keys the worker sends that the runner does not use (`node`,
    /// `archs`) are ignored.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self> {
        let text = |key: &str| match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::BadRequest(format!("{key} must be a string or null"))),
        };
        let backchannel = match body.get("backchannel") {
            None => BackchannelInfo::None,
            Some(spec) => {
                BackchannelInfo::from_request(spec).map_err(|e| Error::BadRequest(e.to_string()))?
            }
        };
        Ok(Self {
            worker: text("worker")?,
            worker_link: text("worker_link")?,
            backchannel,
            codebase: text("codebase")?,
            campaign: text("campaign")?,
        })
    }
}

/// Whether an assignment is for real or a dry look at the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Claim the item and hand it out.
    Assign,
    /// Show what would be handed out, changing nothing.
    Peek,
}

/// Why no run was handed out.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// No queue item this request may have.
    #[error("queue empty")]
    QueueEmpty,
    /// The runner was started without `--public-vcs-location`: workers could not push their
    /// results, so nothing is handed out (and nothing aborted).
    #[error("no public VCS location configured: start the runner with --public-vcs-location")]
    NoVcsLocation,
    /// A forge or the VCS store answered 429: the item was aborted as `*-rate-limited` and its
    /// host is blocked until `until`.
    #[error("{limited}")]
    RateLimited {
        /// Which host answered 429, and for how long.
        limited: RateLimited,
        /// When the host may be tried again.
        until: NaiveDateTime,
    },
    /// Anything else went wrong (database, store, storage).
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<sqlx::Error> for AssignError {
    fn from(error: sqlx::Error) -> Self {
        Self::Failed(error.into())
    }
}

impl From<StoreError> for AssignError {
    fn from(error: StoreError) -> Self {
        Self::Failed(error.into())
    }
}

/// A handed-out run and the assignment JSON for the worker.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The active run, as registered in the store (or as it would be, for a peek).
    pub run: ActiveRun,
    /// The assignment JSON sent to the worker.
    pub json: Value,
}

/// Hands out the next item the request may have (or, with [`Mode::Peek`], shows it). The span
/// carries the item being looked at (the last one is the one handed out).
#[tracing::instrument(
    name = "assign",
    skip_all,
    fields(
        worker = request.worker.as_deref(),
        peek = (mode == Mode::Peek),
        queue_id = tracing::field::Empty,
        codebase = tracing::field::Empty,
        campaign = tracing::field::Empty,
        run_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
)]
pub async fn assign(
    state: &AppState,
    request: &AssignRequest,
    mode: Mode,
) -> Result<Assignment, AssignError> {
    let started = std::time::Instant::now();
    let assigned = next_assignment(state, request, mode).await;
    let outcome = match &assigned {
        Ok(_) => "assigned",
        Err(AssignError::QueueEmpty) => "queue-empty",
        Err(_) => "error",
    };
    tracing::Span::current().record("outcome", outcome);
    if mode == Mode::Assign {
        state
            .metrics
            .assignment_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
    }
    assigned
}

/// The loop of [`assign`]: the next row, its checks, the claim, the probes.
async fn next_assignment(
    state: &AppState,
    request: &AssignRequest,
    mode: Mode,
) -> Result<Assignment, AssignError> {
    if state.vcs_stores.is_empty() {
        return Err(AssignError::NoVcsLocation);
    }
    // Items peek passed over: peek may not abort them, so it steps around them instead.
    let mut passed_over: Vec<i64> = Vec::new();
    // Candidates finished by this request: the post-run reschedule may queue them again at
    // once, and they must not be picked (and finished) over and over.
    let mut finished_here: HashSet<(String, String, Option<String>)> = HashSet::new();
    loop {
        let now = state.clock.now();
        // One connection for the read, the build configuration and the claim, each committed
        // on its own; none is held while the upstream is probed (up to 15 s), so finishing
        // runs keep their connections.
        let mut conn = state.warm_connections.acquire().await?;
        let (row, held) = next_row(state, &mut conn, request, &passed_over, mode, now).await?;
        let Some(row) = row else {
            conn.park();
            if mode == Mode::Assign {
                state.metrics.queue_empty.inc();
            }
            return Err(AssignError::QueueEmpty);
        };
        let (item, vcs_info) = row.into_parts();
        let span = tracing::Span::current();
        span.record("queue_id", item.id);
        span.record("codebase", item.codebase.as_str());
        span.record("campaign", item.campaign.as_str());
        let key = (
            item.codebase.clone(),
            item.campaign.clone(),
            item.change_set.clone(),
        );
        if finished_here.contains(&key) {
            passed_over.push(item.id);
            continue;
        }
        let run = ActiveRun::from_queue_item(
            &item,
            uuid::Uuid::new_v4().to_string(),
            now,
            vcs_info,
            request.backchannel.clone(),
            request.worker.clone(),
            request.worker_link.clone(),
        );
        span.record("run_id", run.log_id.as_str());
        let plan = match plan(state, &run) {
            Ok(plan) => plan,
            Err(_) if mode == Mode::Peek => {
                passed_over.push(item.id);
                continue;
            }
            Err(bad) => {
                finish_unassignable(state, &mut conn, &run, bad, now).await?;
                finished_here.insert(key);
                continue;
            }
        };
        let build_config = build_config(state, &mut conn, &run).await?;
        if mode == Mode::Assign && !claim(state, &mut conn, &run, now).await? {
            continue;
        }
        // Claimed (committed): the claims now keep other assigners off the row.
        drop(held);
        conn.park();
        match hand_out(state, run, &plan, build_config, mode, item.refresh, now).await? {
            Some(assignment) => return Ok(assignment),
            None if mode == Mode::Peek => passed_over.push(item.id),
            None => {}
        }
    }
}

/// The next queue row this request may have: not claimed, not held by another assigner of
/// this process, not passed over, not on a rate-limited or avoided host. To assign, the row
/// is held in hand (see `in_hand`) until the caller claims it or lets go. No request holds
/// two connections at once: what a store outside the database holds (claims, rate limits) is
/// read before the row, in one round trip; a store in the database has the next-item query
/// read its tables itself.
async fn next_row<'s>(
    state: &'s AppState,
    conn: &mut sqlx::PgConnection,
    request: &AssignRequest,
    passed_over: &[i64],
    mode: Mode,
    now: NaiveDateTime,
) -> Result<(Option<crate::db::queue::NextItem>, Option<HeldItem<'s>>), AssignError> {
    // A peek claims nothing, so it neither waits for a turn nor holds what it reads.
    let turn = match mode {
        Mode::Assign => Some(
            state
                .items_in_hand
                .take_turn()
                .await
                .map_err(|_| Error::Database(sqlx::Error::PoolTimedOut))?,
        ),
        Mode::Peek => None,
    };
    // Claims kept outside the database are read within the turn: a row another assigner let
    // go of before the turn began had its claim in by then, so the list shows it.
    let in_database = state.store.claims_in_database();
    let (mut excluded_ids, limited) = if in_database {
        (Vec::new(), Vec::new())
    } else {
        state.store.claims_and_rate_limits(now).await?
    };
    excluded_ids.extend(passed_over);
    if let Some(turn) = &turn {
        excluded_ids.extend(turn.held_by_others());
    }
    let listed = crate::registry::with_avoided(state, limited);
    let excluded = ExcludedHosts {
        listed: &listed,
        rate_limited_at: in_database.then_some(now),
    };
    let claimed = if in_database {
        Claimed::ActiveRunTableAnd(&excluded_ids)
    } else {
        Claimed::Ids(&excluded_ids)
    };
    let row = crate::db::queue::next_item(
        conn,
        excluded,
        claimed,
        request.codebase.as_deref(),
        request.campaign.as_deref(),
    )
    .await?;
    let held = match (turn, &row) {
        (Some(turn), Some(row)) => Some(turn.hold(row.id)),
        _ => None,
    };
    Ok((row, held))
}

/// Finishes an item that cannot be handed out. It is claimed first, as an assignment's item
/// is (so no other assigner finishes it too, and an item stored since it was read is left
/// alone), then its run is stored and the claim released; no active run is counted.
async fn finish_unassignable(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    run: &ActiveRun,
    bad: Unassignable,
    now: NaiveDateTime,
) -> Result<(), AssignError> {
    match state
        .store
        .register_run_in(conn, &run.log_id, run.queue_id, &run.to_json(now), now)
        .await
    {
        Ok(()) => {}
        // Another assigner's now, or gone: nothing left to finish here.
        Err(StoreError::AlreadyClaimed { .. } | StoreError::QueueItemGone(_)) => return Ok(()),
        Err(other) => return Err(other.into()),
    }
    tracing::info!(queue_id = run.queue_id, code = bad.code, reason = %bad.description, "finishing unassignable queue item");
    let mut result = JanitorResult::aborted(run, bad.code, &bad.description, None, now);
    // A store in the database releases the claim in the run's transaction (through the
    // store, so that a mirrored copy drops it too); one outside it only once the deletion
    // of the row is committed, as every finish does (see `register_run_in`).
    let in_database = state.store.claims_in_database();
    let stored = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        crate::finish::store_result(&mut tx, run, &mut result, false, None).await?;
        if in_database {
            state.store.unclaim_run_in(&mut tx, &run.log_id).await?;
        }
        tx.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if stored.is_err() || !in_database {
        // On the same connection: no request holds two at once.
        state.store.unclaim_run_in(conn, &run.log_id).await?;
    }
    stored?;
    state.queue_upkeep.deleted_one();
    crate::finish::announce(state, run, &result, false).await?;
    // In the background, as every run the runner ends itself (`schedule::after_run`).
    state
        .rescheduler
        .spawn(crate::finish::after_run(run, &result));
    Ok(())
}

/// Registers the run, claiming its item, in a statement committed on its own; false if
/// another assigner claimed the item first, or its run was stored since the item was read.
async fn claim(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    run: &ActiveRun,
    now: NaiveDateTime,
) -> Result<bool, AssignError> {
    let data = run.to_json(now);
    match state
        .store
        .register_run_in(conn, &run.log_id, run.queue_id, &data, now)
        .await
    {
        Ok(()) => {}
        Err(StoreError::AlreadyClaimed { .. } | StoreError::QueueItemGone(_)) => return Ok(false),
        Err(other) => return Err(other.into()),
    }
    crate::registry::count_registration(state, run);
    if state.store.claims_in_database() {
        state.own_runs.remember(&run.log_id, data);
    }
    Ok(true)
}

/// Probes and describes a planned (and, to assign, claimed) run; `None` when the probe
/// turned it down and the next item should be tried.
async fn hand_out(
    state: &AppState,
    mut run: ActiveRun,
    plan: &Plan,
    build_config: serde_json::Value,
    mode: Mode,
    refresh: bool,
    now: NaiveDateTime,
) -> Result<Option<Assignment>, AssignError> {
    let listed_url = run.main_branch_url().map(str::to_string);
    let probed = match probe(state, &mut run, refresh).await {
        Ok(probed) => probed,
        Err(failure) => {
            return match turn_down(state, &run, mode, failure, now).await? {
                TurnedDown::TryNext => Ok(None),
                TurnedDown::Answer(error) => Err(error),
            };
        }
    };
    let changed = run.resume_from.is_some() || run.main_branch_url() != listed_url.as_deref();
    if mode == Mode::Assign && changed {
        // The stored run names the canonical URL and what it resumes, as Python's.
        crate::registry::update_run(state, &run, now).await?;
    }
    match describe(state, &run, plan, &build_config, &probed) {
        Ok(json) => Ok(Some(Assignment { run, json })),
        Err(error) => {
            // Never leave a phantom claim behind a failed assignment.
            if mode == Mode::Assign {
                crate::registry::unclaim_run(state, &run.log_id).await?;
            }
            Err(error.into())
        }
    }
}
