//! Assignment: choose the next queue item, claim it atomically, and describe the work to the
//! worker in the JSON `janitor-worker` accepts.
//!
//! Items that cannot yield a valid assignment (unknown campaign, no VCS URL, a VCS the
//! worker does not support, no store for it, a broken build configuration or command) are
//! finished with a result code inside the claiming transaction, before any active run is
//! registered, and the next item is tried.

pub mod branch_url;
pub mod builder;
pub mod command;
pub mod committer;
pub mod upstream;
pub mod vcs_store;

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::assign::builder::{BuildLocations, get_builder};
use crate::assign::upstream::{OpenError, RateLimited, VCS_STORE_BRANCH_OPEN_TIMEOUT};
use crate::db::queue::Claimed;
use crate::error::{Error, Result};
use crate::models::{ActiveRun, BackchannelInfo, Branch, JanitorResult, ResumeInfo};
use crate::state::StoreError;

/// What a worker asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssignRequest {
    pub worker: Option<String>,
    pub worker_link: Option<String>,
    pub backchannel: BackchannelInfo,
    pub codebase: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Claim the item and hand it out.
    Assign,
    /// Show what would be handed out, changing nothing.
    Peek,
}

#[derive(Debug, thiserror::Error)]
pub enum AssignError {
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
        limited: RateLimited,
        until: NaiveDateTime,
    },
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
    pub run: ActiveRun,
    pub json: Value,
}

/// Why an item cannot be handed out: a result code and a description.
struct Unassignable {
    code: &'static str,
    description: String,
}

fn unassignable(code: &'static str, description: impl Into<String>) -> Unassignable {
    Unassignable {
        code,
        description: description.into(),
    }
}

/// Everything the assignment needs, computed before the claim so that a bad item is
/// finished rather than handed out.
struct Plan {
    command: String,
    command_env: BTreeMap<String, String>,
}

/// What probing the upstream branch and the VCS store found.
struct Probed {
    /// The effective VCS type: detected, else the database's, else `git` without a URL.
    vcs_type: String,
    /// `None` unless the upstream branch opened.
    colocated_branches: Option<Vec<String>>,
    resume: Option<ResumeInfo>,
}

/// Why probing cannot lead to an assignment.
enum ProbeFailure {
    /// Finish the item with this code and try the next one.
    Unassignable(Unassignable),
    /// A 429: finish the item with `code` and answer 429.
    RateLimited {
        code: &'static str,
        limited: RateLimited,
    },
    Failed(Error),
}

impl From<Error> for ProbeFailure {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

impl From<sqlx::Error> for ProbeFailure {
    fn from(error: sqlx::Error) -> Self {
        Self::Failed(error.into())
    }
}

pub async fn assign(
    state: &AppState,
    request: &AssignRequest,
    mode: Mode,
) -> Result<Assignment, AssignError> {
    // Items peek passed over: peek may not abort them, so it steps around them instead.
    let mut passed_over: Vec<i64> = Vec::new();
    // Candidates finished by this request: the post-run reschedule may queue them again at
    // once, and they must not be picked (and finished) over and over.
    let mut finished_here: HashSet<(String, String, Option<String>)> = HashSet::new();
    if state.vcs_stores.is_empty() {
        return Err(AssignError::NoVcsLocation);
    }
    loop {
        let now = state.clock.now();
        let exclude_hosts = crate::registry::excluded_hosts(state, now).await?;
        let mut claimed_ids = if state.store.claims_in_database() {
            Vec::new()
        } else {
            state.store.assigned_queue_ids().await?
        };
        claimed_ids.extend(&passed_over);
        let claimed = if state.store.claims_in_database() && passed_over.is_empty() {
            Claimed::ActiveRunTable
        } else if state.store.claims_in_database() {
            // Peek with passed-over items on the PostgreSQL store: list every claim.
            claimed_ids.extend(state.store.assigned_queue_ids().await?);
            Claimed::Ids(&claimed_ids)
        } else {
            Claimed::Ids(&claimed_ids)
        };
        let mut tx = state.pool.begin().await?;
        let Some(row) = crate::db::queue::next_item(
            &mut tx,
            &exclude_hosts,
            claimed,
            request.codebase.as_deref(),
            request.campaign.as_deref(),
        )
        .await?
        else {
            if mode == Mode::Assign {
                state.metrics.queue_empty.inc();
            }
            return Err(AssignError::QueueEmpty);
        };
        let (item, vcs_info) = row.into_parts();
        let key = (
            item.codebase.clone(),
            item.campaign.clone(),
            item.change_set.clone(),
        );
        if finished_here.contains(&key) {
            tx.rollback().await?;
            passed_over.push(item.id);
            continue;
        }
        let mut run = ActiveRun::from_queue_item(
            &item,
            uuid::Uuid::new_v4().to_string(),
            now,
            vcs_info,
            request.backchannel.clone(),
            request.worker.clone(),
            request.worker_link.clone(),
        );
        let plan = match plan(state, &run) {
            Ok(plan) => plan,
            Err(bad) => {
                if mode == Mode::Peek {
                    passed_over.push(item.id);
                    continue;
                }
                tracing::info!(queue_id = item.id, code = bad.code, reason = %bad.description, "finishing unassignable queue item");
                let mut result =
                    JanitorResult::aborted(&run, bad.code, &bad.description, None, now);
                crate::finish::store_result(&mut tx, &run, &mut result).await?;
                tx.commit().await?;
                crate::finish::announce(state, &run, &result, false).await?;
                finished_here.insert(key);
                continue;
            }
        };
        // Claim now, so that no connection is held while the upstream is probed (up to
        // 15 s): other assigners skip the claimed item, and finishing runs keep their
        // connections.
        if mode == Mode::Assign {
            let data = run.to_json(now);
            match state
                .store
                .register_run_in(&mut tx, &run.log_id, run.queue_id, &data, now)
                .await
            {
                Ok(()) => {}
                Err(StoreError::AlreadyClaimed { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
            tx.commit().await?;
            crate::registry::count_registration(state, &run);
        } else {
            tx.rollback().await?;
        }
        let listed_url = run.main_branch_url().map(str::to_string);
        let probed = match probe(state, &mut run, item.refresh).await {
            Ok(probed) => probed,
            Err(failure) => match turn_down(state, &run, mode, failure, now).await? {
                TurnedDown::TryNext => {
                    if mode == Mode::Peek {
                        passed_over.push(item.id);
                    }
                    continue;
                }
                TurnedDown::Answer(error) => return Err(error),
            },
        };
        let changed = run.resume_from.is_some() || run.main_branch_url() != listed_url.as_deref();
        if mode == Mode::Assign && changed {
            // The stored run names the canonical URL and what it resumes, as Python's.
            state
                .store
                .update_run(&run.log_id, &run.to_json(now))
                .await?;
        }
        return match describe(state, &run, &plan, probed).await {
            Ok(json) => Ok(Assignment { run, json }),
            Err(error) => {
                // Never leave a phantom claim behind a failed assignment.
                if mode == Mode::Assign {
                    crate::registry::unclaim_run(state, &run.log_id).await?;
                }
                Err(error.into())
            }
        };
    }
}

enum TurnedDown {
    /// The item was finished (or, for peek, stepped over): try the next one.
    TryNext,
    Answer(AssignError),
}

/// Ends a claimed item the probe turned down: finished with its result code and released
/// before anything reaches the worker. Peek records nothing.
async fn turn_down(
    state: &AppState,
    run: &ActiveRun,
    mode: Mode,
    failure: ProbeFailure,
    now: NaiveDateTime,
) -> Result<TurnedDown, AssignError> {
    let (code, description, transient, answer) = match failure {
        ProbeFailure::Failed(error) => {
            if mode == Mode::Assign {
                crate::registry::unclaim_run(state, &run.log_id).await?;
            }
            return Err(error.into());
        }
        ProbeFailure::Unassignable(bad) => (bad.code, bad.description, None, None),
        ProbeFailure::RateLimited { code, limited } => {
            let until = limited.until(now);
            let description = limited.to_string();
            (
                code,
                description,
                Some(true),
                Some(AssignError::RateLimited { limited, until }),
            )
        }
    };
    if mode == Mode::Peek {
        return Ok(match answer {
            Some(answer) => TurnedDown::Answer(answer),
            None => TurnedDown::TryNext,
        });
    }
    if let Some(AssignError::RateLimited { limited, until }) = &answer {
        tracing::warn!(queue_id = run.queue_id, host = %limited.host, %until, "rate limited");
        state.store.rate_limit_host(&limited.host, *until).await?;
        state
            .metrics
            .rate_limited_host
            .with_label_values(&[limited.host.as_str()])
            .inc();
    } else {
        tracing::info!(queue_id = run.queue_id, code, reason = %description, "finishing unassignable queue item");
    }
    let mut result = JanitorResult::aborted(run, code, &description, transient, now);
    match crate::finish::finish_run(state, run, &mut result).await {
        Ok(()) | Err(Error::RunExists(_)) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(match answer {
        Some(answer) => TurnedDown::Answer(answer),
        None => TurnedDown::TryNext,
    })
}

fn plan(state: &AppState, run: &ActiveRun) -> Result<Plan, Unassignable> {
    let Some(campaign) = state.config.campaign(&run.campaign) else {
        return Err(unassignable(
            "unknown-campaign",
            format!("Campaign {} unknown", run.campaign),
        ));
    };
    if !campaign.default_empty() && run.main_branch_url().is_none() {
        return Err(unassignable("not-in-vcs", "No VCS URL known for codebase."));
    }
    get_builder(&state.config, campaign)
        .map_err(|e| unassignable("invalid-build-config", e.to_string()))?;
    if run.command.trim().is_empty() {
        return Err(unassignable("invalid-command", "queue item has no command"));
    }
    let (command_env, command) = crate::assign::command::splitout_env(&run.command)
        .map_err(|e| unassignable("invalid-command", e.to_string()))?;
    Ok(Plan {
        command,
        command_env,
    })
}

/// The campaign and builder `plan` has already checked.
fn campaign_builder<'a>(
    state: &'a AppState,
    run: &ActiveRun,
) -> Result<(
    &'a crate::config::Campaign,
    crate::assign::builder::Builder<'a>,
)> {
    let campaign = state
        .config
        .campaign(&run.campaign)
        .ok_or_else(|| Error::BadRequest(format!("Campaign {} unknown", run.campaign)))?;
    let builder =
        get_builder(&state.config, campaign).map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok((campaign, builder))
}

/// Opens the upstream branch (canonical URL, VCS, colocated branches) and looks for a run to
/// resume from in the janitor's VCS store, then settles the VCS type the worker gets.
async fn probe(
    state: &AppState,
    run: &mut ActiveRun,
    refresh: bool,
) -> Result<Probed, ProbeFailure> {
    let (_, builder) = campaign_builder(state, run)?;
    let mut colocated_branches = None;
    let detected = match run.main_branch_url().map(str::to_string) {
        None => run
            .vcs_type()
            .map(str::to_string)
            .or(Some("git".to_string())),
        Some(url) => match state.branch_opener.open(&url, run.vcs_type()).await {
            Ok(opened) => {
                colocated_branches = Some(builder.additional_colocated_branches(&opened));
                run.vcs_info.branch_url = Some(opened.url.clone());
                Some(opened.vcs_type.to_string())
            }
            Err(OpenError::RateLimited(limited)) => {
                return Err(ProbeFailure::RateLimited {
                    code: "pull-rate-limited",
                    limited,
                });
            }
            Err(OpenError::Unavailable(reason)) => {
                tracing::debug!(%url, %reason, "cannot open upstream branch");
                run.vcs_type().map(str::to_string)
            }
        },
    };
    let Some(vcs_type) = detected.map(|vcs| vcs.to_lowercase()) else {
        let url = run.main_branch_url().unwrap_or_default();
        return Err(ProbeFailure::Unassignable(unassignable(
            "unsupported-vcs",
            format!("VCS type of {url} is not known and the branch cannot be opened"),
        )));
    };
    if vcs_type != "git" && vcs_type != "bzr" {
        return Err(ProbeFailure::Unassignable(unassignable(
            "unsupported-vcs",
            format!("workers support git and bzr, not {vcs_type}"),
        )));
    }
    let Some(store) = state.vcs_stores.get(&vcs_type) else {
        return Err(ProbeFailure::Unassignable(unassignable(
            "unsupported-vcs",
            format!("no public VCS store for {vcs_type} (see --public-vcs-location)"),
        )));
    };
    let resume = if refresh {
        None
    } else {
        let branch = format!("{}/main", run.campaign);
        let tip = tokio::time::timeout(
            VCS_STORE_BRANCH_OPEN_TIMEOUT,
            store.branch_tip(&state.branch_opener, run.codebase(), &branch),
        )
        .await;
        match tip {
            Ok(Ok(Some(tip))) => {
                let url = store.branch_url(run.codebase(), &branch);
                let mut conn = state.pool.acquire().await?;
                check_resume_result(&mut conn, run.codebase(), &run.campaign, &tip, url).await?
            }
            Ok(Ok(None)) => None,
            Ok(Err(OpenError::RateLimited(limited))) => {
                return Err(ProbeFailure::RateLimited {
                    code: "resume-rate-limited",
                    limited,
                });
            }
            Ok(Err(OpenError::Unavailable(reason))) => {
                tracing::debug!(codebase = run.codebase(), %reason, "cannot open resume branch");
                None
            }
            Err(_) => {
                tracing::warn!(codebase = run.codebase(), "timeout opening resume branch");
                None
            }
        }
    };
    run.resume_from = resume.as_ref().map(|resume| resume.run_id.clone());
    Ok(Probed {
        vcs_type,
        colocated_branches,
        resume,
    })
}

/// The earlier run whose result the resume branch holds: the newest successful run of the
/// campaign at that revision, unless its publication was rejected. A run with a result branch
/// that has no remote name cannot be described to the worker, so it is not resumed; nor is a
/// run that a worker of this codebase already failed to resume because it could not open the
/// branch (`worker-resume-branch-missing`): offering it again would fail every later run.
async fn check_resume_result(
    conn: &mut sqlx::PgConnection,
    codebase: &str,
    campaign: &str,
    tip: &str,
    branch_url: String,
) -> Result<Option<ResumeInfo>, sqlx::Error> {
    let Some(found) = crate::db::runs::resume_candidate(conn, campaign, tip).await? else {
        tracing::warn!(%branch_url, revision = tip, "resume branch tip matches no run");
        return Ok(None);
    };
    if found.publish_status == "rejected" {
        tracing::info!(run_id = %found.id, "not resuming: the last run was rejected");
        return Ok(None);
    }
    if found
        .branches
        .iter()
        .any(|branch| branch.remote_name.is_none())
    {
        tracing::warn!(run_id = %found.id, "not resuming: a result branch has no remote name");
        return Ok(None);
    }
    if crate::db::runs::resume_reported_missing(conn, codebase, campaign, &found.id).await? {
        tracing::info!(
            run_id = %found.id,
            %branch_url,
            "not resuming: a worker could not open this resume branch before"
        );
        return Ok(None);
    }
    if is_authenticated_url(&branch_url) {
        tracing::warn!(%branch_url, "not resuming from an authenticated URL");
        return Ok(None);
    }
    Ok(Some(ResumeInfo {
        run_id: found.id,
        result: found.result.unwrap_or(Value::Null),
        branch_url,
        branches: found
            .branches
            .into_iter()
            .map(|row| Branch {
                role: row.role,
                remote_name: row.remote_name,
                base_revision: row.base_revision,
                revision: row.revision,
            })
            .collect(),
    }))
}

fn is_authenticated_url(url: &str) -> bool {
    url.starts_with("git+ssh:") || url.starts_with("bzr+ssh:")
}

/// The assignment JSON (models spec 7.4, with the DECISIONS rulings on the worker contract).
async fn describe(state: &AppState, run: &ActiveRun, plan: &Plan, probed: Probed) -> Result<Value> {
    let (campaign, builder) = campaign_builder(state, run)?;
    let locations = BuildLocations {
        apt_archive_url: state.settings.public_apt_archive_location.as_deref(),
        dep_server_url: state.settings.public_dep_server_url.as_deref(),
        host_vendor: &state.host_vendor,
    };
    let build_env = builder.build_env(&locations);
    let mut conn = state.pool.acquire().await?;
    let build_config = builder
        .config(
            &mut conn,
            &locations,
            run.codebase(),
            run.change_set.as_deref(),
        )
        .await?;
    drop(conn);
    let store = state
        .vcs_stores
        .get(&probed.vcs_type)
        .ok_or_else(|| Error::BadRequest(format!("no public VCS store for {}", probed.vcs_type)))?;
    let cached_url = store.branch_url(run.codebase(), &builder.cache_branch_name(&locations));
    let target_url = store.repository_url(run.codebase());
    let mut env: BTreeMap<String, String> = build_env.clone();
    if let Some(committer) = state
        .settings
        .committer
        .as_deref()
        .or(state.config.committer())
    {
        env.extend(crate::committer_env(Some(committer)));
    }
    env.extend(plan.command_env.clone());
    Ok(json!({
        "id": run.log_id,
        "description": format!("{} on {}", run.campaign, run.codebase()),
        "queue_id": run.queue_id,
        "branch": {
            "default-empty": campaign.default_empty(),
            "url": run.main_branch_url(),
            "subpath": run.subpath().unwrap_or(""),
            "vcs_type": probed.vcs_type,
            "cached_url": cached_url,
            "additional_colocated_branches": probed.colocated_branches,
        },
        "resume": probed.resume.as_ref().map(ResumeInfo::to_json),
        "build": {
            "target": builder.kind(),
            "environment": build_env,
            "config": build_config,
        },
        "command": plan.command,
        "codebase": run.codebase(),
        "codemod": {"command": plan.command, "environment": {}},
        "env": env,
        "campaign": run.campaign,
        "force-build": campaign.force_build(),
        "skip-setup-validation": campaign.skip_setup_validation(),
        "target_repository": {"url": target_url, "vcs_type": probed.vcs_type},
    }))
}
