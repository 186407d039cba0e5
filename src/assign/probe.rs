//! Probing before an assignment: the upstream branch (canonical URL, VCS, colocated
//! branches), the VCS store's resume branch and the run it holds; and what happens to a
//! claimed item the probe turns down (finished with its result code, a host rate-limited).

use chrono::NaiveDateTime;
use serde_json::Value;

use super::builder::Builder;
use super::plan::{Unassignable, campaign_builder, unassignable};
use super::upstream::{OpenError, RateLimited, VCS_STORE_BRANCH_OPEN_TIMEOUT};
use super::vcs_store::VcsStore;
use super::{AssignError, Mode};
use crate::app::AppState;
use crate::error::Error;
use crate::models::{ActiveRun, Branch, JanitorResult, ResumeInfo};

/// What probing the upstream branch and the VCS store found.
pub(super) struct Probed {
    /// The effective VCS type: detected, else the database's, else `git` without a URL.
    pub(super) vcs_type: String,
    /// `None` unless the upstream branch opened.
    pub(super) colocated_branches: Option<Vec<String>>,
    pub(super) resume: Option<ResumeInfo>,
}

/// Why probing cannot lead to an assignment.
pub(super) enum ProbeFailure {
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

/// Opens the upstream branch (canonical URL, VCS, colocated branches) and looks for a run to
/// resume from in the janitor's VCS store, then settles the VCS type the worker gets.
pub(super) async fn probe(
    state: &AppState,
    run: &mut ActiveRun,
    refresh: bool,
) -> Result<Probed, ProbeFailure> {
    let (_, builder) = campaign_builder(state, run)?;
    let (detected, colocated_branches) = open_upstream(state, run, &builder).await?;
    let vcs_type = settle_vcs_type(run, detected)?;
    let Some(store) = state.vcs_stores.get(&vcs_type) else {
        return Err(ProbeFailure::Unassignable(unassignable(
            "unsupported-vcs",
            format!("no public VCS store for {vcs_type} (see --public-vcs-location)"),
        )));
    };
    let resume = if refresh {
        None
    } else {
        find_resume(state, run, store).await?
    };
    run.resume_from = resume.as_ref().map(|resume| resume.run_id.clone());
    Ok(Probed {
        vcs_type,
        colocated_branches,
        resume,
    })
}

/// The upstream branch's VCS (detected, else the database's, else `git` without a URL) and,
/// when it opened, its colocated branches; the run takes its canonical URL.
#[tracing::instrument(
    name = "upstream.open",
    skip_all,
    fields(host = tracing::field::Empty, forge = tracing::field::Empty, outcome = tracing::field::Empty)
)]
async fn open_upstream(
    state: &AppState,
    run: &mut ActiveRun,
    builder: &Builder<'_>,
) -> Result<(Option<String>, Option<Vec<String>>), ProbeFailure> {
    let Some(url) = run.main_branch_url().map(str::to_string) else {
        let vcs_type = run.vcs_type().unwrap_or("git").to_string();
        return Ok((Some(vcs_type), None));
    };
    let span = tracing::Span::current();
    let host = crate::assign::upstream::url_host(&url).unwrap_or_default();
    let forge = crate::assign::upstream::forge_kind(&host);
    span.record("host", host.as_str());
    span.record("forge", forge);
    let started = std::time::Instant::now();
    let opened = state.branch_opener.open(&url, run.vcs_type()).await;
    let outcome = match &opened {
        Ok(_) => "opened",
        Err(OpenError::RateLimited(_)) => "rate-limited",
        Err(OpenError::Unavailable(_)) => "unavailable",
        Err(OpenError::Unreachable(_)) => "unreachable",
    };
    span.record("outcome", outcome);
    state
        .metrics
        .upstream_probe_duration
        .with_label_values(&[forge, outcome])
        .observe(started.elapsed().as_secs_f64());
    match opened {
        Ok(opened) => {
            let colocated = builder.additional_colocated_branches(&opened);
            run.vcs_info.branch_url = Some(opened.url.clone());
            Ok((Some(opened.vcs_type.to_string()), Some(colocated)))
        }
        Err(OpenError::RateLimited(limited)) => Err(ProbeFailure::RateLimited {
            code: "pull-rate-limited",
            limited,
        }),
        Err(OpenError::Unavailable(reason) | OpenError::Unreachable(reason)) => {
            tracing::debug!(%url, %reason, "cannot open upstream branch");
            Ok((run.vcs_type().map(str::to_string), None))
        }
    }
}

/// The VCS type the worker gets: known, and one workers support.
fn settle_vcs_type(run: &ActiveRun, detected: Option<String>) -> Result<String, ProbeFailure> {
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
    Ok(vcs_type)
}

/// The run the store's `<campaign>/main` branch holds a result of, if it may be resumed.
#[tracing::instrument(
    name = "vcs_store.find_resume",
    skip_all,
    fields(codebase = run.codebase(), campaign = %run.campaign)
)]
async fn find_resume(
    state: &AppState,
    run: &ActiveRun,
    store: &VcsStore,
) -> Result<Option<ResumeInfo>, ProbeFailure> {
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
            Ok(check_resume_result(&mut conn, run.codebase(), &run.campaign, &tip, url).await?)
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(OpenError::RateLimited(limited))) => Err(ProbeFailure::RateLimited {
            code: "resume-rate-limited",
            limited,
        }),
        Ok(Err(OpenError::Unavailable(reason) | OpenError::Unreachable(reason))) => {
            tracing::debug!(codebase = run.codebase(), %reason, "cannot open resume branch");
            Ok(None)
        }
        Err(_) => {
            tracing::warn!(codebase = run.codebase(), "timeout opening resume branch");
            Ok(None)
        }
    }
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

pub(super) enum TurnedDown {
    /// The item was finished (or, for peek, stepped over): try the next one.
    TryNext,
    Answer(AssignError),
}

/// Ends a claimed item the probe turned down: finished with its result code and released
/// before anything reaches the worker. Peek records nothing.
pub(super) async fn turn_down(
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
