//! The scheduling entry points (queue-and-scheduling.md §2.3-2.6): read what the formulas need from
//! the database, compute, and upsert the queue row. Where the Python raises, these return a typed
//! error instead (DECISIONS.md, Scheduling).

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::PgConnection;

use super::offset::{DEFAULT_SCHEDULE_OFFSET, OffsetError, OffsetInputs, calculate_offset};
use super::{DEFAULT_ESTIMATED_DURATION, Estimate, Micros, PastRun, estimate_from_history};
use crate::db;
use crate::db::debian_versions::VersionOperator;

/// Why a candidate could not be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// No candidate for the codebase and campaign (Python `CandidateUnavailable`).
    #[error("Candidate {campaign}/{codebase} is not available")]
    CandidateUnavailable {
        /// The campaign asked for.
        campaign: String,
        /// The codebase asked for.
        codebase: String,
    },
    /// The inputs cannot give a positive offset (a Python assertion).
    #[error("During {campaign}/{codebase}: {source}")]
    Offset {
        /// The campaign being scheduled.
        campaign: String,
        /// The codebase being scheduled.
        codebase: String,
        /// Which input was out of range.
        source: OffsetError,
    },
    /// Every codebase value is zero or NULL, so values cannot be normalised.
    #[error("cannot normalise codebase values: the largest is 0")]
    ZeroMaximumValue,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Everything `do_schedule_regular` takes; `None` fields are read from the candidate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegularRequest<'a> {
    /// The codebase to schedule.
    pub codebase: &'a str,
    /// The campaign to schedule it in.
    pub campaign: &'a str,
    /// The command the worker runs; the candidate's when `None`.
    pub command: Option<String>,
    /// The candidate's value; the stored candidate's when `None`.
    pub candidate_value: Option<i64>,
    /// The candidate's success chance; read when `None`, but the offset does not use it.
    pub success_chance: Option<f64>,
    /// The codebase's value relative to the largest; computed when `None`.
    pub normalized_codebase_value: Option<f64>,
    /// Who or what asked for the run; `scheduler` when `None`.
    pub requester: Option<&'a str>,
    /// Added to the computed offset.
    pub default_offset: f64,
    /// The candidate's context; the stored candidate's when `None`.
    pub context: Option<String>,
    /// The change set the run belongs to, if any.
    pub change_set: Option<&'a str>,
    /// Work out the offset and estimate, writing nothing (the queue id is then `-1`).
    pub dry_run: bool,
    /// Start afresh instead of resuming from an earlier run's branch.
    pub refresh: bool,
    /// The bucket to queue in; `default` when `None`.
    pub bucket: Option<&'a str>,
}

/// What scheduling did: the offset (before truncation), the estimated duration, the queue
/// row (`-1` on a dry run) and the bucket the row is in now.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// Added to the bucket's lowest priority (before truncation toward zero).
    pub offset: f64,
    /// How long the run is expected to take.
    pub estimated_duration: Micros,
    /// The queue row's id; `-1` on a dry run.
    pub queue_id: i64,
    /// The bucket the row is in now, which may be more urgent than the one asked for.
    pub bucket: String,
}

/// `do_schedule_regular`.
pub async fn do_schedule_regular(
    conn: &mut PgConnection,
    now: NaiveDateTime,
    request: RegularRequest<'_>,
) -> Result<Scheduled, ScheduleError> {
    let request = with_candidate(conn, request).await?;
    schedule_complete(conn, now, request).await
}

/// A request whose gaps were filled from the stored candidate, with the pair's history when
/// the caller read it already.
pub(crate) struct CompleteRequest<'a> {
    request: RegularRequest<'a>,
    history: Option<Vec<db::runs::HistoryRow>>,
}

/// Fills what `request` leaves out from the stored candidate; `CandidateUnavailable` when
/// there is none. Only reads.
pub(crate) async fn with_candidate<'a>(
    conn: &mut PgConnection,
    mut request: RegularRequest<'a>,
) -> Result<CompleteRequest<'a>, ScheduleError> {
    if request.candidate_value.is_none()
        || request.success_chance.is_none()
        || request.command.is_none()
    {
        fill_from_candidate(conn, &mut request).await?;
    }
    Ok(CompleteRequest {
        request,
        history: None,
    })
}

/// The rest of `do_schedule_regular`: the estimate, the offset and the queue row.
#[tracing::instrument(
    name = "do_schedule_regular",
    skip_all,
    fields(codebase = request.request.codebase, campaign = request.request.campaign)
)]
pub(crate) async fn schedule_complete(
    conn: &mut PgConnection,
    now: NaiveDateTime,
    request: CompleteRequest<'_>,
) -> Result<Scheduled, ScheduleError> {
    let CompleteRequest {
        request:
            RegularRequest {
                codebase,
                campaign,
                command,
                candidate_value,
                // Only ever multiplied into a value nobody reads (queue-and-scheduling.md §9.4).
                success_chance: _,
                normalized_codebase_value,
                requester,
                default_offset,
                context,
                change_set,
                dry_run,
                refresh,
                bucket,
            },
        history,
    } = request;
    let history = match history {
        Some(history) => history,
        None => db::runs::history(conn, codebase, campaign).await?,
    };
    let estimate =
        estimate_from_rows(conn, codebase, campaign, context.as_deref(), now, history).await?;
    let normalized_codebase_value = match normalized_codebase_value {
        Some(value) => Some(value),
        None => normalized_value(conn, codebase).await?,
    };
    let offset = calculate_offset(&OffsetInputs {
        estimated_duration: estimate.duration,
        normalized_codebase_value,
        probability_of_success: estimate.probability_of_success,
        candidate_value,
        total_previous_runs: estimate.total_previous_runs,
    })
    .map_err(|source| ScheduleError::Offset {
        campaign: campaign.to_string(),
        codebase: codebase.to_string(),
        source,
    })?;
    let offset = default_offset + offset;
    let bucket = bucket.unwrap_or("default");
    let command = command.unwrap_or_default();
    let (queue_id, bucket) = if dry_run {
        (-1, bucket.to_string())
    } else {
        let item = db::queue::NewQueueItem {
            codebase,
            campaign,
            change_set,
            command: &command,
            offset,
            bucket,
            context: context.as_deref(),
            estimated_duration: Some(estimate.duration.to_interval()),
            refresh,
            requester: Some(requester.unwrap_or("scheduler")),
        };
        let (queue_id, bucket) = db::queue::add(conn, &item).await?;
        (i64::from(queue_id), bucket)
    };
    Ok(Scheduled {
        offset,
        estimated_duration: estimate.duration,
        queue_id,
        bucket,
    })
}

/// What the request leaves out, read from the stored candidate (Python re-reads it).
async fn fill_from_candidate(
    conn: &mut PgConnection,
    request: &mut RegularRequest<'_>,
) -> Result<(), ScheduleError> {
    let (codebase, campaign) = (request.codebase, request.campaign);
    let Some(facts) =
        db::candidates::schedule_facts(conn, codebase, campaign, request.change_set).await?
    else {
        return Err(ScheduleError::CandidateUnavailable {
            campaign: campaign.to_string(),
            codebase: codebase.to_string(),
        });
    };
    fill_from_facts(request, facts);
    Ok(())
}

/// A request completed from what the caller read (the statement that stores a run reads
/// it for the post-run reschedule): as [`with_candidate`] after its read, with the history
/// and the codebase's normalised value not read again.
pub(crate) fn with_read(
    mut request: RegularRequest<'_>,
    read: db::runs::RequeueRead,
) -> Result<CompleteRequest<'_>, ScheduleError> {
    fill_from_facts(&mut request, read.candidate);
    match read.normalized_value {
        db::runs::NormalizedValue::Value(value) => {
            request.normalized_codebase_value = request.normalized_codebase_value.or(Some(value));
        }
        // Read again by `schedule_complete` (no row gives no value), as the single path does.
        db::runs::NormalizedValue::NoCodebase => {}
        db::runs::NormalizedValue::ZeroMaximum => return Err(ScheduleError::ZeroMaximumValue),
    }
    Ok(CompleteRequest {
        request,
        history: Some(read.history),
    })
}

/// What the request leaves out, taken from the candidate's facts.
fn fill_from_facts(request: &mut RegularRequest<'_>, facts: db::candidates::ScheduleFacts) {
    request.candidate_value = request.candidate_value.or(facts.value.map(i64::from));
    request.success_chance = request.success_chance.or(facts.success_chance);
    if request.context.is_none() {
        request.context = facts.context;
    }
    request.command = request.command.take().or(Some(facts.command));
}

/// The estimator's answer with the duration always known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FullEstimate {
    /// The estimated chance that a run succeeds, in `[0, 1]`.
    pub probability_of_success: f64,
    /// How long a run is expected to take.
    pub duration: Micros,
    /// How many past runs the estimate counted.
    pub total_previous_runs: u32,
}

/// `estimate_success_probability_and_duration`: the history of (codebase, campaign); with
/// no counted run, the codebase's average duration, else the campaign's, else 15 s.
pub async fn estimate_success_probability_and_duration(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
    context: Option<&str>,
    now: NaiveDateTime,
) -> Result<FullEstimate, ScheduleError> {
    let history = db::runs::history(conn, codebase, campaign).await?;
    estimate_from_rows(conn, codebase, campaign, context, now, history).await
}

/// [`estimate_success_probability_and_duration`] from the pair's history, already read.
async fn estimate_from_rows(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
    context: Option<&str>,
    now: NaiveDateTime,
    history: Vec<db::runs::HistoryRow>,
) -> Result<FullEstimate, ScheduleError> {
    let runs = past_runs(history);
    // The dependency checks need the database; settle them before the pure estimate.
    let mut satisfied = Vec::new();
    for run in &runs {
        if let Some(relations) = run.unsatisfied_relations()
            && !run.ignored_at(now)
        {
            satisfied.push((relations.clone(), deps_satisfied(conn, relations).await?));
        }
    }
    let Estimate {
        probability_of_success,
        duration,
        total_previous_runs,
    } = estimate_from_history(&runs, context, now, |relations| {
        satisfied
            .iter()
            .find(|(r, _)| r == relations)
            .is_some_and(|(_, ok)| *ok)
    });
    let duration = match duration {
        Some(duration) => duration,
        None => match db::runs::average_duration(conn, Some(codebase), None).await? {
            Some(average) => Micros::from_interval(&average),
            None => match db::runs::average_duration(conn, None, Some(campaign)).await? {
                Some(average) => Micros::from_interval(&average),
                None => DEFAULT_ESTIMATED_DURATION,
            },
        },
    };
    Ok(FullEstimate {
        probability_of_success,
        duration,
        total_previous_runs,
    })
}

/// History rows as the estimator's runs. A run without a start or finish time has no
/// duration to average (Python: TypeError); it is left out.
fn past_runs(rows: Vec<db::runs::HistoryRow>) -> Vec<PastRun> {
    rows.into_iter().filter_map(past_run).collect()
}

/// One history row as the estimator's run; `None` without a start or finish time.
pub(crate) fn past_run(row: db::runs::HistoryRow) -> Option<PastRun> {
    let (Some(duration), Some(start_time)) = (row.duration, row.start_time) else {
        tracing::warn!(code = %row.result_code, "run without start or finish time left out of the estimate");
        return None;
    };
    Some(PastRun {
        result_code: row.result_code,
        instigated_context: row.instigated_context,
        context: row.context,
        failure_details: row.failure_details,
        duration: Micros::from_interval(&duration),
        start_time,
    })
}

/// `estimate_duration`: the average over (codebase, campaign), else the codebase, else the
/// campaign, else 15 s.
pub async fn estimate_duration(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
) -> Result<Micros, ScheduleError> {
    for (codebase, campaign) in [
        (Some(codebase), Some(campaign)),
        (Some(codebase), None),
        (None, Some(campaign)),
    ] {
        if let Some(average) = db::runs::average_duration(conn, codebase, campaign).await? {
            return Ok(Micros::from_interval(&average));
        }
    }
    Ok(DEFAULT_ESTIMATED_DURATION)
}

/// The single path's normalised codebase value; a zero maximum is reported, not crashed on.
async fn normalized_value(
    conn: &mut PgConnection,
    codebase: &str,
) -> Result<Option<f64>, ScheduleError> {
    match db::codebases::normalized_value(conn, codebase).await {
        Ok(value) => Ok(value),
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("22012") => {
            Err(ScheduleError::ZeroMaximumValue)
        }
        Err(other) => Err(other.into()),
    }
}

/// What `do_schedule` takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleRequest<'a> {
    /// The campaign to run.
    pub campaign: &'a str,
    /// The codebase to schedule.
    pub codebase: &'a str,
    /// The bucket to queue in; `default` when `None`.
    pub bucket: Option<&'a str>,
    /// The change set the run belongs to, if any.
    pub change_set: Option<&'a str>,
    /// Added to the bucket's lowest priority; `-1` (the head of the bucket) when `None`.
    pub offset: Option<f64>,
    /// Start afresh instead of resuming from an earlier run's branch.
    pub refresh: bool,
    /// Who or what asked for the run.
    pub requester: Option<&'a str>,
    /// How long the run is expected to take; estimated from past runs when `None`.
    pub estimated_duration: Option<Micros>,
    /// The command the worker runs; any candidate's for the pair when `None`.
    pub command: Option<String>,
}

/// `do_schedule`: to the head of its bucket (offset −1 unless given), context cleared.
#[tracing::instrument(
    name = "do_schedule",
    skip_all,
    fields(codebase = request.codebase, campaign = request.campaign)
)]
pub async fn do_schedule(
    conn: &mut PgConnection,
    request: ScheduleRequest<'_>,
) -> Result<Scheduled, ScheduleError> {
    let offset = request.offset.unwrap_or(DEFAULT_SCHEDULE_OFFSET);
    let bucket = request.bucket.unwrap_or("default");
    let command = match request.command {
        Some(command) => command,
        None => db::candidates::any_command(conn, request.codebase, request.campaign)
            .await?
            .ok_or_else(|| ScheduleError::CandidateUnavailable {
                campaign: request.campaign.to_string(),
                codebase: request.codebase.to_string(),
            })?,
    };
    let estimated_duration = match request.estimated_duration {
        Some(duration) => duration,
        None => estimate_duration(conn, request.codebase, request.campaign).await?,
    };
    let (queue_id, bucket) = db::queue::add(
        conn,
        &db::queue::NewQueueItem {
            codebase: request.codebase,
            campaign: request.campaign,
            change_set: request.change_set,
            command: &command,
            offset,
            bucket,
            context: None,
            estimated_duration: Some(estimated_duration.to_interval()),
            refresh: request.refresh,
            requester: request.requester,
        },
    )
    .await?;
    Ok(Scheduled {
        offset,
        estimated_duration,
        queue_id: i64::from(queue_id),
        bucket,
    })
}

/// What `do_schedule_control` takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlRequest<'a> {
    /// The codebase whose control run to schedule.
    pub codebase: &'a str,
    /// The change set the run belongs to, if any.
    pub change_set: Option<&'a str>,
    /// The revision to update to (`brz up --revision`); the branch tip when `None`.
    pub main_branch_revision: Option<&'a str>,
    /// Added to the bucket's lowest priority; `-1` (the head of the bucket) when `None`.
    pub offset: Option<f64>,
    /// Start afresh instead of resuming from an earlier run's branch.
    pub refresh: bool,
    /// The bucket to queue in; `control` when `None`.
    pub bucket: Option<&'a str>,
    /// Who or what asked for the run.
    pub requester: Option<&'a str>,
    /// Accepted and ignored, as in Python (queue-and-scheduling.md §9.10).
    pub estimated_duration: Option<Micros>,
}

/// The campaign control runs belong to.
pub const CONTROL_CAMPAIGN: &str = "control";

/// `do_schedule_control`: `brz up [--revision=R]` in campaign `control`, bucket `control`.
#[tracing::instrument(name = "do_schedule_control", skip_all, fields(codebase = request.codebase))]
pub async fn do_schedule_control(
    conn: &mut PgConnection,
    request: ControlRequest<'_>,
) -> Result<Scheduled, ScheduleError> {
    let mut words = vec!["brz".to_string(), "up".to_string()];
    if let Some(revision) = request.main_branch_revision {
        words.push(format!("--revision={revision}"));
    }
    let command = crate::assign::command::join(&words);
    do_schedule(
        conn,
        ScheduleRequest {
            campaign: CONTROL_CAMPAIGN,
            codebase: request.codebase,
            bucket: Some(request.bucket.unwrap_or("control")),
            change_set: request.change_set,
            offset: request.offset,
            refresh: request.refresh,
            requester: request.requester,
            estimated_duration: None,
            command: Some(command),
        },
    )
    .await
}

/// Whether every AND-group of Debian relations has an available alternative in
/// `all_debian_versions`. Without that relation (a plain Janitor schema) nothing is
/// satisfiable; that is logged once.
pub async fn deps_satisfied(
    conn: &mut PgConnection,
    relations: &Value,
) -> Result<bool, sqlx::Error> {
    static MISSING_LOGGED: AtomicBool = AtomicBool::new(false);
    let Some(groups) = relations.as_array() else {
        return Ok(false);
    };
    if !db::debian_versions::present(conn).await? {
        if !MISSING_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "relation all_debian_versions does not exist; dependency checks are skipped"
            );
        }
        return Ok(false);
    }
    for group in groups {
        let mut available = false;
        for alternative in group.as_array().into_iter().flatten() {
            if dep_available(conn, alternative).await? {
                available = true;
                break;
            }
        }
        if !available {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One alternative: a source of that name, at a matching version if one is given. Debian's
/// strict `>>`/`<<` mean `>`/`<` (debversion has no such operators); any other operator, or
/// a malformed alternative, is not available.
async fn dep_available(conn: &mut PgConnection, alternative: &Value) -> Result<bool, sqlx::Error> {
    let Some(name) = alternative.get("name").and_then(Value::as_str) else {
        return Ok(false);
    };
    let constraint = match alternative.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::Array(pair)) => match pair.as_slice() {
            [Value::String(operator), Value::String(version)] => {
                let Some(operator) = version_operator(operator) else {
                    return Ok(false);
                };
                Some((operator, version.as_str()))
            }
            _ => return Ok(false),
        },
        Some(_) => return Ok(false),
    };
    match db::debian_versions::source_available(conn, name, constraint).await {
        Ok(found) => Ok(found),
        // A version debversion cannot read matches nothing (Python: an SQL error).
        Err(sqlx::Error::Database(error)) if constraint.is_some() => {
            tracing::debug!(%error, name, ?constraint, "unusable version in a relation");
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

/// Debian's relation operators as debversion's; the strict `>>`/`<<` are `>`/`<`.
fn version_operator(operator: &str) -> Option<VersionOperator> {
    Some(match operator {
        ">>" | ">" => VersionOperator::Greater,
        "<<" | "<" => VersionOperator::Less,
        "=" => VersionOperator::Equal,
        "!=" => VersionOperator::NotEqual,
        "<=" => VersionOperator::LessOrEqual,
        ">=" => VersionOperator::GreaterOrEqual,
        _ => return None,
    })
}
