//! The JSON bodies handlers answer with, as types: each field in the order and under the
//! name the Python runner's handlers use.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::candidate::{AcceptedCandidate, UploadReport};
use crate::db::candidates::Candidate;

/// `{}`: what the Python answers when there is nothing to say.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// An error: `{"reason": ...}`.
#[derive(Debug, Serialize)]
pub struct Reason<'a> {
    pub reason: &'a str,
}

/// `409` on a finish whose run is stored already: the reason is the exception text, which in
/// Python is just the id.
#[derive(Debug, Serialize)]
pub struct RunExists<'a> {
    pub id: &'a str,
    pub reason: &'a str,
}

/// `429` on an assignment whose host is rate-limited.
#[derive(Debug, Serialize)]
pub struct RateLimited<'a> {
    pub reason: String,
    pub host: &'a str,
    pub retry_after: i64,
}

/// One candidate of `GET /candidates`.
#[derive(Debug, Serialize)]
pub struct CandidateEntry {
    pub id: i32,
    pub codebase: String,
    pub campaign: String,
    pub command: String,
    #[serde(rename = "publish-policy")]
    pub publish_policy: Option<String>,
    pub change_set: Option<String>,
    pub context: Option<String>,
    pub value: Option<i32>,
    pub success_chance: Option<f64>,
}

impl From<Candidate> for CandidateEntry {
    fn from(c: Candidate) -> Self {
        Self {
            id: c.id,
            codebase: c.codebase,
            campaign: c.campaign,
            command: c.command,
            publish_policy: c.publish_policy,
            change_set: c.change_set,
            context: c.context,
            value: c.value,
            success_chance: c.success_chance,
        }
    }
}

/// A candidate an upload put on the queue.
#[derive(Debug, Serialize)]
pub struct ScheduledCandidate<'a> {
    pub campaign: &'a str,
    pub codebase: &'a str,
    pub bucket: &'a str,
    pub change_set: Option<&'a str>,
    pub offset: f64,
    pub estimated_duration: f64,
    #[serde(rename = "queue-id")]
    pub queue_id: i64,
    pub refresh: bool,
}

/// A candidate an upload stored but could not queue, and why.
#[derive(Debug, Serialize)]
pub struct UnschedulableCandidate<'a> {
    pub campaign: &'a str,
    pub codebase: &'a str,
    pub reason: &'a str,
}

/// `POST /candidates`.
#[derive(Debug, Serialize)]
pub struct CandidateUpload<'a> {
    pub success: Vec<ScheduledCandidate<'a>>,
    pub unschedulable: Vec<UnschedulableCandidate<'a>>,
    pub invalid_command: &'a BTreeSet<Option<String>>,
    pub invalid_value: &'a [Value],
    pub unknown_campaigns: &'a BTreeSet<String>,
    pub unknown_codebases: &'a BTreeSet<String>,
    pub unknown_publish_policies: &'a BTreeSet<Option<String>>,
}

impl<'a> From<&'a UploadReport> for CandidateUpload<'a> {
    fn from(report: &'a UploadReport) -> Self {
        Self {
            success: report.accepted.iter().filter_map(scheduled).collect(),
            unschedulable: report
                .accepted
                .iter()
                .filter_map(|c| {
                    Some(UnschedulableCandidate {
                        campaign: &c.campaign,
                        codebase: &c.codebase,
                        reason: c.schedule_error.as_deref()?,
                    })
                })
                .collect(),
            invalid_command: &report.invalid_command,
            invalid_value: &report.invalid_value,
            unknown_campaigns: &report.unknown_campaigns,
            unknown_codebases: &report.unknown_codebases,
            unknown_publish_policies: &report.unknown_publish_policies,
        }
    }
}

fn scheduled(c: &AcceptedCandidate) -> Option<ScheduledCandidate<'_>> {
    let scheduled = c.scheduled.as_ref()?;
    Some(ScheduledCandidate {
        campaign: &c.campaign,
        codebase: &c.codebase,
        bucket: &scheduled.bucket,
        change_set: c.change_set.as_deref(),
        offset: scheduled.offset,
        estimated_duration: scheduled.estimated_duration.total_seconds(),
        queue_id: scheduled.queue_id,
        refresh: c.refresh,
    })
}

/// `GET /runs/{id}`.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub codebase: String,
    pub campaign: String,
    pub publish_status: String,
}

impl From<crate::db::runs::RunSummary> for RunSummary {
    fn from(run: crate::db::runs::RunSummary) -> Self {
        Self {
            codebase: run.codebase,
            campaign: run.campaign,
            publish_status: run.publish_status,
        }
    }
}
