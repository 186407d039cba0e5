//! `POST /schedule` and `POST /schedule-control`: an operator or the publisher asks for a
//! run now (http-api 5.7-5.8).

use serde_json::{Map, Value, json};
use sqlx::PgPool;

use super::engine::{
    CONTROL_CAMPAIGN, ControlRequest, ScheduleError, ScheduleRequest, Scheduled, do_schedule,
    do_schedule_control,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::names::QUEUE_BUCKETS;

fn text(body: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::BadRequest(format!("{key} must be a string or null"))),
    }
}

fn required_text(body: &Map<String, Value>, key: &str) -> Result<String> {
    text(body, key)?.ok_or_else(|| Error::BadRequest(format!("{key} is required")))
}

fn flag(body: &Map<String, Value>, key: &str) -> Result<bool> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::BadRequest(format!("{key} must be true or false"))),
    }
}

/// A number, or a string holding one (the site forwards form fields as strings).
fn number(body: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    let bad = || Error::BadRequest(format!("{key} must be a number"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// A number of seconds (of field `key`) as a duration; one that a duration cannot hold
/// (Python's `timedelta` raises `OverflowError`) is a bad request.
fn duration(seconds: Option<f64>, key: &str) -> Result<Option<super::Micros>> {
    seconds
        .map(|seconds| {
            super::checked_timedelta_from_seconds(seconds)
                .ok_or_else(|| Error::BadRequest(format!("{key} is out of range")))
        })
        .transpose()
}

fn bucket(body: &Map<String, Value>) -> Result<Option<String>> {
    let bucket = text(body, "bucket")?;
    if let Some(name) = &bucket
        && !QUEUE_BUCKETS.contains(&name.as_str())
    {
        return Err(Error::BadRequest(format!("unknown bucket {name:?}")));
    }
    Ok(bucket)
}

/// What the single scheduling paths answer over HTTP when the Python would have raised: a
/// 4xx with a reason, never a 500 (the database itself failing excepted).
impl From<ScheduleError> for Error {
    fn from(error: ScheduleError) -> Self {
        match error {
            ScheduleError::Database(error) => match crate::db::constraint(&error).as_deref() {
                Some("queue_codebase_fkey") => Error::NotFound("Codebase not found".into()),
                Some("queue_change_set_fkey") => Error::bad_request("unknown change set"),
                _ => error.into(),
            },
            ScheduleError::CandidateUnavailable { .. } => {
                Error::bad_request("Candidate not available")
            }
            other => Error::BadRequest(other.to_string()),
        }
    }
}

fn response(campaign: &str, codebase: &str, scheduled: &Scheduled) -> Value {
    json!({
        "campaign": campaign,
        "offset": scheduled.offset,
        "bucket": scheduled.bucket,
        "codebase": codebase,
        "queue_id": scheduled.queue_id,
        "estimated_duration_seconds": scheduled.estimated_duration.total_seconds(),
    })
}

/// `POST /schedule`.
pub async fn schedule(pool: &PgPool, config: &Config, body: &Map<String, Value>) -> Result<Value> {
    let mut conn = pool.acquire().await?;
    let (campaign, codebase, run_command) = match text(body, "run_id")? {
        Some(run_id) => {
            let run = crate::db::runs::schedule_identity(&mut conn, &run_id).await?;
            run.ok_or_else(|| Error::NotFound("Run not found".into()))?
        }
        None => (
            required_text(body, "campaign")?,
            required_text(body, "codebase")?,
            None,
        ),
    };
    let campaign_config = config
        .campaign(&campaign)
        .ok_or_else(|| Error::BadRequest(format!("Campaign {campaign} unknown")))?;
    let command =
        match crate::db::candidates::any_command(&mut conn, &codebase, &campaign).await? {
            Some(command) => Some(command),
            None => campaign_config
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .or(run_command),
        }
        .ok_or_else(|| Error::bad_request("no command specified"))?;
    let estimated_duration = duration(
        number(body, "estimated_duration")?.filter(|seconds| *seconds != 0.0),
        "estimated_duration",
    )?;
    let bucket = bucket(body)?;
    let change_set = text(body, "change_set")?;
    let requester = text(body, "requester")?;
    let scheduled = do_schedule(
        &mut conn,
        ScheduleRequest {
            campaign: &campaign,
            codebase: &codebase,
            bucket: bucket.as_deref(),
            change_set: change_set.as_deref(),
            offset: number(body, "offset")?,
            refresh: flag(body, "refresh")?,
            requester: requester.as_deref(),
            estimated_duration,
            command: Some(command),
        },
    )
    .await?;
    Ok(response(&campaign, &codebase, &scheduled))
}

/// `POST /schedule-control`.
pub async fn schedule_control(pool: &PgPool, body: &Map<String, Value>) -> Result<Value> {
    let mut conn = pool.acquire().await?;
    if !body.contains_key("requester") {
        return Err(Error::bad_request("requester is required (it may be null)"));
    }
    let (revision, codebase) = match text(body, "run_id")? {
        Some(run_id) => {
            let run = crate::db::runs::control_identity(&mut conn, &run_id).await?;
            let (revision, codebase) =
                run.ok_or_else(|| Error::NotFound("Run not found".into()))?;
            let revision = revision.ok_or_else(|| {
                Error::BadRequest(format!("run {run_id} has no main branch revision"))
            })?;
            (revision, codebase)
        }
        None => (
            required_text(body, "main_branch_revision")?,
            required_text(body, "codebase")?,
        ),
    };
    let bucket = bucket(body)?;
    let change_set = text(body, "change_set")?;
    let requester = text(body, "requester")?;
    let scheduled = do_schedule_control(
        &mut conn,
        ControlRequest {
            codebase: &codebase,
            change_set: change_set.as_deref(),
            main_branch_revision: Some(&revision),
            offset: number(body, "offset")?,
            refresh: flag(body, "refresh")?,
            bucket: bucket.as_deref(),
            requester: requester.as_deref(),
            estimated_duration: duration(
                number(body, "estimated_duration")?,
                "estimated_duration",
            )?,
        },
    )
    .await?;
    Ok(response(CONTROL_CAMPAIGN, &codebase, &scheduled))
}
