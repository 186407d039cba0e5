//! Candidate upload and removal.
//!
//! An upload is one transaction with a savepoint per candidate: candidates that name an
//! unknown campaign, codebase or publish policy, or have no command or a zero value, are
//! skipped and reported; a malformed candidate rejects the whole upload (400) and nothing is
//! kept. Each stored candidate is then handed to the scheduler, which puts it on the queue.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Acquire, PgConnection, PgPool};

use crate::config::Config;
use crate::db::ConstraintExt;
use crate::db::candidates::{self, NewCandidate};
use crate::error::{Error, Result};
use crate::names::{QUEUE_BUCKETS, is_valid_name};
use crate::schedule::engine::{RegularRequest, ScheduleError, Scheduled, do_schedule_regular};

/// One accepted candidate, and how it is to be queued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedCandidate {
    /// Id of the stored candidate row.
    pub id: i32,
    /// The campaign it is a candidate for.
    pub campaign: String,
    /// The codebase to run the campaign on.
    pub codebase: String,
    /// The change set the candidate belongs to, if any.
    pub change_set: Option<String>,
    /// The stored command: the candidate's own, else the campaign's.
    pub command: String,
    /// `None` lets the scheduler choose.
    pub bucket: Option<String>,
    /// Whether the run starts afresh instead of resuming: set when the command changed under an
    /// open merge proposal.
    pub refresh: bool,
    /// The requester recorded on the queue item: `candidate update` (or why the command
    /// changed), followed by the uploaded `requester`, if any.
    pub requester: String,
    /// Where `do_schedule_regular` put it; `None` with `schedule_error` when it could not.
    #[serde(skip)]
    pub scheduled: Option<Scheduled>,
    /// Why the stored candidate is not on the queue (Python: a 500 for the whole upload).
    pub schedule_error: Option<String>,
}

/// The outcome of an upload: the accepted candidates and, per reason, what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UploadReport {
    /// The candidates stored, in upload order.
    pub accepted: Vec<AcceptedCandidate>,
    /// Commands (as sent) of candidates with neither a command of their own nor a campaign one.
    pub invalid_command: BTreeSet<Option<String>>,
    /// The refused values as sent. Every refused value equals zero, and Python keeps them in a
    /// set, where `0`, `0.0` and `false` are one member: the first one sent.
    pub invalid_value: Vec<Value>,
    /// Campaigns named by candidates that are not configured.
    pub unknown_campaigns: BTreeSet<String>,
    /// Codebases named by candidates that are not in the database.
    pub unknown_codebases: BTreeSet<String>,
    /// Publish policies named by candidates that are not in the database.
    pub unknown_publish_policies: BTreeSet<Option<String>>,
}

/// A candidate as uploaded, validated.
struct Upload {
    row: NewCandidate,
    bucket: Option<String>,
    requester: Option<String>,
    followup_for: Vec<String>,
}

/// Stores and queues every valid candidate of `body` (a JSON list), in one transaction.
pub async fn upload(
    pool: &PgPool,
    config: &Config,
    body: &Value,
    now: NaiveDateTime,
) -> Result<UploadReport> {
    let entries = body
        .as_array()
        .ok_or_else(|| Error::bad_request("expected a JSON list of candidates"))?;
    let mut report = UploadReport::default();
    let mut tx = pool.begin().await?;
    for entry in entries {
        let Some(upload) = parse_candidate(entry, config, &mut report)? else {
            continue;
        };
        let mut savepoint = tx.begin().await?;
        let Some(id) = store_candidate(&mut savepoint, &upload, entry, &mut report).await? else {
            savepoint.rollback().await?;
            continue;
        };
        let accepted = queue_candidate(&mut savepoint, upload, id, now).await?;
        savepoint.commit().await?;
        report.accepted.push(accepted);
    }
    tx.commit().await?;
    Ok(report)
}

/// Upserts the candidate; `None` when it names an unknown codebase or publish policy (then
/// recorded in the report, and the savepoint must be rolled back).
async fn store_candidate(
    conn: &mut PgConnection,
    upload: &Upload,
    entry: &Value,
    report: &mut UploadReport,
) -> Result<Option<i32>> {
    let error = match candidates::upsert(conn, &upload.row).await {
        Ok(id) => return Ok(Some(id)),
        Err(error) => error,
    };
    match crate::db::constraint(&error).as_deref() {
        Some("candidate_codebase_fkey") => {
            report.unknown_codebases.insert(upload.row.codebase.clone());
        }
        Some("candidate_publish_policy_fkey") => {
            report
                .unknown_publish_policies
                .insert(upload.row.publish_policy.clone());
        }
        Some("candidate_change_set_fkey") => {
            return Err(Error::BadRequest(format!(
                "unknown change set {:?} for candidate {}",
                upload.row.change_set.as_deref().unwrap_or_default(),
                render(entry)
            )));
        }
        _ => return Err(error.into()),
    }
    Ok(None)
}

/// Records the stored candidate's follow-ups and hands it to the scheduler: a candidate
/// whose command changed under an open merge proposal goes to `update-existing-mp`, refreshed.
async fn queue_candidate(
    conn: &mut PgConnection,
    upload: Upload,
    id: i32,
    now: NaiveDateTime,
) -> Result<AcceptedCandidate> {
    let row = &upload.row;
    let superseded =
        candidates::superseded_proposal_command(conn, &row.codebase, &row.campaign, &row.command)
            .await?;
    let (bucket, refresh, mut requester) = match superseded {
        Some(old) => (
            Some("update-existing-mp".to_string()),
            true,
            format!(
                "command changed for existing mp: {} ⇒ {}",
                python_repr(&old),
                python_repr(&row.command)
            ),
        ),
        None => (upload.bucket.clone(), false, "candidate update".to_string()),
    };
    if let Some(extra) = upload.requester.as_deref().filter(|r| !r.is_empty()) {
        requester.push(' ');
        requester.push_str(extra);
    }
    for origin in &upload.followup_for {
        candidates::insert_followup(conn, origin, id)
            .await
            .on_constraint(|name| {
                (name == "followup_origin_fkey")
                    .then(|| Error::BadRequest(format!("followup_for: unknown run {origin:?}")))
            })?;
    }
    // The value, success chance and context are read back from the stored candidate.
    let scheduled = do_schedule_regular(
        conn,
        now,
        RegularRequest {
            codebase: &row.codebase,
            campaign: &row.campaign,
            change_set: row.change_set.as_deref(),
            command: Some(row.command.clone()),
            bucket: bucket.as_deref(),
            requester: Some(&requester),
            refresh,
            ..RegularRequest::default()
        },
    )
    .await;
    let (scheduled, schedule_error) = match scheduled {
        Ok(scheduled) => (Some(scheduled), None),
        Err(ScheduleError::Database(error)) => return Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "candidate stored but not scheduled");
            (None, Some(error.to_string()))
        }
    };
    let NewCandidate {
        campaign,
        codebase,
        change_set,
        command,
        ..
    } = upload.row;
    Ok(AcceptedCandidate {
        id,
        campaign,
        codebase,
        change_set,
        command,
        bucket,
        refresh,
        requester,
        scheduled,
        schedule_error,
    })
}

/// Validates one entry. `Ok(None)` means it is skipped and recorded in the report.
fn parse_candidate(
    entry: &Value,
    config: &Config,
    report: &mut UploadReport,
) -> Result<Option<Upload>> {
    let obj = entry.as_object().ok_or_else(|| {
        Error::BadRequest(format!(
            "candidate must be a JSON object: {}",
            render(entry)
        ))
    })?;
    let bad =
        |message: String| Error::BadRequest(format!("{message} for candidate {}", render(entry)));
    let codebase = match obj.get("codebase") {
        None => return Err(bad("no codebase field".into())),
        Some(Value::Null) => return Err(bad("codebase field is None".into())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("codebase must be a string".into())),
    };
    let campaign = match obj.get("campaign") {
        None => return Err(bad("no campaign field".into())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("campaign must be a string".into())),
    };
    let text = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{key} must be a string or null"))),
    };
    let command = text("command")?;
    let publish_policy = text("publish-policy")?;
    let change_set = text("change_set")?;
    let context = text("context")?;
    let requester = text("requester")?;
    let bucket = text("bucket")?;
    if let Some(bucket) = &bucket
        && !QUEUE_BUCKETS.contains(&bucket.as_str())
    {
        return Err(bad(format!("unknown bucket {bucket:?}")));
    }
    let (value, zero_value) = parse_value(obj).map_err(bad)?;
    let success_chance = parse_success_chance(obj).map_err(bad)?;
    let followup_for = parse_followup_for(obj).map_err(bad)?;
    let Some(campaign_config) = config.campaign(&campaign) else {
        tracing::warn!(%campaign, "unknown campaign in candidate upload");
        report.unknown_campaigns.insert(campaign);
        return Ok(None);
    };
    if !is_valid_name(&campaign) {
        return Err(bad(format!("invalid campaign name {campaign:?}")));
    }
    // The candidate's own command, else the campaign's.
    let non_empty = |command: &Option<String>| command.clone().filter(|c| !c.is_empty());
    let Some(command) = non_empty(&command).or_else(|| non_empty(&campaign_config.command)) else {
        report.invalid_command.insert(command);
        return Ok(None);
    };
    if let Some(zero) = zero_value {
        if report.invalid_value.is_empty() {
            report.invalid_value.push(zero);
        }
        return Ok(None);
    }
    Ok(Some(Upload {
        row: NewCandidate {
            codebase,
            campaign,
            command,
            change_set,
            context,
            value,
            success_chance,
            publish_policy,
        },
        bucket,
        requester,
        followup_for,
    }))
}

/// `success_chance`: a number or null.
fn parse_success_chance(obj: &Map<String, Value>) -> std::result::Result<Option<f64>, String> {
    match obj.get("success_chance") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err("success_chance must be a number or null".into()),
    }
}

/// `followup_for`: the ids of the runs this candidate follows up on.
fn parse_followup_for(obj: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let invalid = || "followup_for must be a list of run ids".to_string();
    match obj.get("followup_for") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| id.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

/// The candidate value: a positive 32-bit integer or null. A zero (`0`, `0.0`, `false`) is
/// returned separately, as its JSON text: such candidates are reported, not rejected.
fn parse_value(
    obj: &Map<String, Value>,
) -> std::result::Result<(Option<i32>, Option<Value>), String> {
    match obj.get("value") {
        None | Some(Value::Null) => Ok((None, None)),
        Some(v @ Value::Bool(false)) => Ok((None, Some(v.clone()))),
        Some(v @ Value::Number(n)) if n.as_f64() == Some(0.0) => Ok((None, Some(v.clone()))),
        Some(Value::Number(n)) => {
            let value = n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| "value must be a 32-bit integer".to_string())?;
            if value < 0 {
                return Err(format!("value must be positive, not {value}"));
            }
            Ok((Some(value), None))
        }
        Some(_) => Err("value must be an integer or null".to_string()),
    }
}

/// Removes a candidate, its follow-ups and its queue items (every change set).
pub async fn delete(pool: &PgPool, id: i32) -> Result<()> {
    let mut tx = pool.begin().await?;
    candidates::delete(&mut tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no such candidate: {id}")))?;
    tx.commit().await?;
    Ok(())
}

fn render(entry: &Value) -> String {
    entry.to_string()
}

/// Python's `repr` of a string, for messages that quote commands the Python way.
pub fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_like_python() {
        assert_eq!(python_repr("lintian-brush"), "'lintian-brush'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(python_repr("tab\there"), "'tab\\there'");
    }

    #[test]
    fn values() {
        let obj = |v: Value| {
            serde_json::json!({ "value": v })
                .as_object()
                .unwrap()
                .clone()
        };
        assert_eq!(parse_value(&obj(Value::from(5))), Ok((Some(5), None)));
        assert_eq!(
            parse_value(&obj(Value::from(0))),
            Ok((None, Some(Value::from(0))))
        );
        assert_eq!(
            parse_value(&obj(Value::from(0.0))),
            Ok((None, Some(Value::from(0.0))))
        );
        assert_eq!(
            parse_value(&obj(Value::Bool(false))),
            Ok((None, Some(Value::Bool(false))))
        );
        assert!(parse_value(&obj(Value::from(-3))).is_err());
        assert!(parse_value(&obj(Value::from(2.5))).is_err());
        assert!(parse_value(&obj(Value::from("3"))).is_err());
        assert!(parse_value(&obj(Value::from(1_i64 << 40))).is_err());
    }
}
