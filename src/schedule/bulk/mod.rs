//! The bulk scheduler (`janitor.schedule`, queue spec 2.2 and 8): every candidate with a
//! publish policy, in `candidate.id` order, scheduled as the Python's sequential
//! `do_schedule_regular` calls would, but with the history and averages read in a few set
//! queries and the queue upserts emulated in memory (the evolving `MIN(priority)`, one
//! sequence value per upsert, the bucket rule) and written in one transaction.
//!
//! Where the Python raises (a `push-derived` or NULL publish mode, a NULL value with a policy,
//! a NULL policy, every codebase value zero, no base candidate to re-read, an offset
//! assertion), the candidate is skipped and named in the summary; the others are scheduled
//! exactly as the Python would have.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDateTime;
use sqlx::postgres::types::PgInterval;
use sqlx::{Acquire, PgPool};

use super::engine::{ScheduleError, deps_satisfied};
use super::estimate::{
    DependencyRun, HistoryFacts, UNSATISFIED_DEPENDENCIES, estimate_from_facts, shares_context,
};
use super::offset::{OffsetInputs, calculate_offset};
use super::{DEFAULT_ESTIMATED_DURATION, Micros};
use crate::names::QUEUE_BUCKETS;

/// The value each publish mode adds in the bulk path. `push-derived` has none (Python:
/// KeyError).
fn publish_mode_value(mode: &str) -> Option<i64> {
    Some(match mode {
        "skip" | "build-only" => 0,
        "push" => 500,
        "propose" => 400,
        "attempt-push" => 450,
        "bts" => 100,
        _ => return None,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOptions {
    pub campaign: Option<String>,
    /// Only these codebases (all when empty).
    pub codebases: Vec<String>,
    pub dry_run: bool,
    /// Compare the rows it would write with the queue's, writing nothing (`shadow`).
    pub shadow: bool,
    /// For `shadow`: the queue as the Python scheduler found it (a [`QueueSnapshot`] taken
    /// before its run), to start from; without it, the queue as it is, minus the rows
    /// compared.
    pub before: Option<QueueSnapshot>,
}

/// The queue rows a bulk run reads (those without a change set, and the lowest priority of
/// the others), kept to start a later shadow comparison from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    others_min: Option<i64>,
    rows: Vec<LoadedRow>,
}

/// Reads the queue as a bulk run would find it.
pub async fn snapshot_queue(pool: &PgPool) -> Result<QueueSnapshot, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    QueueSnapshot::read(&mut conn).await
}

/// A queue row the bulk scheduler writes (or would write).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduledRow {
    pub codebase: String,
    pub campaign: String,
    pub bucket: String,
    pub priority: i64,
    pub command: String,
    pub context: Option<String>,
    pub estimated_duration_us: i64,
    pub requester: String,
}

/// A candidate the Python would have crashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub codebase: String,
    pub campaign: String,
    pub reason: String,
}

/// Per bucket: rows added, rows updated, and requests that left an existing row alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkSummary {
    pub candidates: usize,
    pub buckets: BTreeMap<String, BucketCounts>,
    pub skipped: Vec<Skipped>,
    /// What each scheduled candidate got, in candidate order: (candidate id, offset, queue
    /// id or −1 on a dry run, bucket; the requested one on a dry run, as Python reports).
    pub scheduled: Vec<(i32, f64, i64, String)>,
    /// The rows added or changed (or that would be, on a dry run), in candidate order.
    pub rows: Vec<ScheduledRow>,
    /// With `shadow`: how those rows compare with the queue's.
    pub shadow: Option<super::shadow::ShadowReport>,
}

/// Whether a named policy has no per-branch policy, and its publish modes.
type PolicyModes = (bool, Arc<[Option<String>]>);

#[derive(Debug, sqlx::FromRow)]
struct CandidateRow {
    id: i32,
    codebase: String,
    campaign: String,
    context: Option<String>,
    value: Option<i32>,
    success_chance: Option<f64>,
    command: String,
    publish_policy: Option<String>,
    /// Filled in from the named policy after reading.
    #[sqlx(skip)]
    policy_is_null: bool,
    /// The publish modes of the candidate's policy, shared by every candidate of the policy.
    #[sqlx(skip)]
    modes: Arc<[Option<String>]>,
}

/// A queue row's id: known, or the n-th sequence value this run uses up (fetched when the
/// rows are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowId {
    Known(i64),
    Slot(usize),
}

/// A queue row as the emulation tracks it.
#[derive(Debug, Clone)]
struct QueueRow {
    id: RowId,
    bucket: usize,
    priority: i64,
    /// Written back at the end: new, or changed.
    state: RowState,
    command: String,
    context: Option<String>,
    estimated_duration: Micros,
    requester: String,
    /// The row as it was in the database, for rows that were there.
    loaded: Option<Box<LoadedRow>>,
}

impl QueueRow {
    fn as_scheduled(&self, (codebase, campaign): Pair) -> ScheduledRow {
        ScheduledRow {
            codebase,
            campaign,
            bucket: QUEUE_BUCKETS[self.bucket].to_string(),
            priority: self.priority,
            command: self.command.clone(),
            context: self.context.clone(),
            estimated_duration_us: self.estimated_duration.0,
            requester: self.requester.clone(),
        }
    }
}

/// A queue row without a change set, as read before the upserts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
struct LoadedRow {
    id: i32,
    codebase: String,
    campaign: String,
    bucket: String,
    priority: i64,
    command: Option<String>,
    context: Option<String>,
    duration: Option<i64>,
    requester: Option<String>,
    refresh: Option<bool>,
}

impl QueueRow {
    /// Whether writing this row would leave the stored one as it is (an upsert that changes
    /// nothing need not rewrite the row and its index entries).
    fn same_as_loaded(&self) -> bool {
        self.loaded.as_deref().is_some_and(|loaded| {
            QUEUE_BUCKETS[self.bucket] == loaded.bucket
                && self.priority == loaded.priority
                && loaded.command.as_deref() == Some(self.command.as_str())
                && self.context == loaded.context
                && loaded.duration == Some(self.estimated_duration.0)
                && loaded.requester.as_deref() == Some(self.requester.as_str())
                && loaded.refresh == Some(false)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    Untouched,
    Inserted,
    Updated,
}

fn bucket_index(name: &str) -> usize {
    QUEUE_BUCKETS
        .iter()
        .position(|b| *b == name)
        .unwrap_or(QUEUE_BUCKETS.len() - 1)
}

/// A multiset of priorities, for `MIN(priority)` after every emulated upsert.
#[derive(Debug, Default)]
struct Priorities(BTreeMap<i64, usize>);

impl Priorities {
    fn insert(&mut self, priority: i64) {
        *self.0.entry(priority).or_default() += 1;
    }

    fn remove(&mut self, priority: i64) {
        if let Some(count) = self.0.get_mut(&priority) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&priority);
            }
        }
    }

    fn min(&self) -> i64 {
        self.0.keys().next().copied().unwrap_or(0)
    }
}

/// A candidate that passed the static checks, with what the Python would pass to
/// `do_schedule_regular` after its own re-read of the base candidate.
struct Prepared {
    candidate: CandidateRow,
    value: Option<i64>,
    normalized: f64,
    context: Option<String>,
}

/// The counted runs of one (codebase, campaign), aggregated in SQL.
#[derive(Debug, Default)]
struct PairHistory {
    /// Durations in seconds, newest first (the order the float sum needs).
    seconds: Vec<f64>,
    successes: u32,
    /// Counted unsatisfied-dependencies runs: (context, instigated context, relations).
    dependency_runs: Vec<(Option<String>, Option<String>, Option<serde_json::Value>)>,
    /// Candidate contexts that some counted run (not a dependency run) shares.
    same_contexts: HashSet<String>,
    /// The codebase's average duration over all campaigns (when read with the history).
    codebase_average: Option<Micros>,
}

/// The distinct (codebase, campaign, context) of candidates with a non-empty context: the
/// only ones a same-context penalty can apply to.
fn contexts_wanted(prepared: &[Prepared]) -> HashSet<(String, String, String)> {
    prepared
        .iter()
        .filter_map(|ready| {
            let context = ready.context.as_deref().filter(|c| !c.is_empty())?;
            Some((
                ready.candidate.codebase.clone(),
                ready.candidate.campaign.clone(),
                context.to_string(),
            ))
        })
        .collect()
}

type Pair = (String, String);

/// Schedules every candidate; `progress(done, total)` is called now and then.
///
/// The reads run before the queue is locked, several at once on their own connections; the
/// lock is held only while the queue is loaded, emulated and written.
pub async fn bulk_schedule(
    pool: &PgPool,
    now: NaiveDateTime,
    options: &BulkOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BulkSummary, ScheduleError> {
    let started = std::time::Instant::now();
    let codebase_filter: Option<&[String]> =
        (!options.codebases.is_empty()).then_some(options.codebases.as_slice());
    let campaign_filter = options.campaign.as_deref();
    let (candidates, values, base) = tokio::try_join!(
        load_candidates(pool, codebase_filter, campaign_filter),
        load_codebase_values(pool),
        load_base_candidates(pool, codebase_filter, campaign_filter),
    )?;
    let mut summary = BulkSummary {
        candidates: candidates.len(),
        ..BulkSummary::default()
    };
    let max_value = values.values().copied().max();
    let mut prepared = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match prepare(candidate, &values, max_value, &base) {
            Ok(ready) => prepared.push(ready),
            Err(skipped) => summary.skipped.push(skipped),
        }
    }

    let contexts = contexts_wanted(&prepared);
    // The middle codebase among the candidates splits the history read in two.
    let pivot = {
        let mut names: Vec<&str> = prepared
            .iter()
            .map(|ready| ready.candidate.codebase.as_str())
            .collect();
        names.sort_unstable();
        names.get(names.len() / 2).map(|name| name.to_string())
    };
    let (mut histories, shared_contexts) = tokio::try_join!(
        load_histories(
            pool,
            now,
            pivot.as_deref(),
            codebase_filter,
            campaign_filter
        ),
        load_same_context(pool, now, &contexts),
    )?;
    for (codebase, campaign, context) in shared_contexts {
        if let Some(history) = histories.get_mut(&(codebase, campaign)) {
            history.same_contexts.insert(context);
        }
    }
    let (satisfied, (codebase_averages, campaign_averages)) = tokio::try_join!(
        check_dependencies(pool, &histories),
        load_averages(pool, &prepared, &histories, campaign_filter.is_none()),
    )?;
    tracing::debug!(elapsed = ?started.elapsed(), pairs = histories.len(), "histories read");

    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let writes = !options.dry_run && !options.shadow;
    if writes {
        // Keeps other writers out while the emulated upserts are valid; readers go on.
        sqlx::query("LOCK TABLE queue IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    let mut queue = QueueState::load(&mut tx).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "queue locked and read");
    // Only a shadow run sets the compared rows aside; a real run pays nothing for it.
    let theirs = options.shadow.then(|| {
        let keys: HashSet<Pair> = prepared
            .iter()
            .map(|ready| {
                (
                    ready.candidate.codebase.clone(),
                    ready.candidate.campaign.clone(),
                )
            })
            .collect();
        match &options.before {
            // The queue now is the Python's result; the run starts from the one it found.
            Some(before) => {
                let now = std::mem::replace(&mut queue, QueueState::from_snapshot(before.clone()));
                now.rows_of(&keys)
            }
            None => queue.take_rewritable(&keys),
        }
    });
    let mut row_ids = Vec::new();
    let total = prepared.len();
    let no_history = PairHistory::default();
    for (done, ready) in prepared.into_iter().enumerate() {
        if done % 1000 == 0 {
            progress(done, total);
        }
        let Prepared {
            candidate,
            value,
            normalized,
            context,
        } = ready;
        let key = (candidate.codebase.clone(), candidate.campaign.clone());
        let history = histories.get(&key).unwrap_or(&no_history);
        let dependency_runs: Vec<DependencyRun> = history
            .dependency_runs
            .iter()
            .map(|(run_context, instigated, relations)| DependencyRun {
                relations: relations.clone(),
                same_context: shares_context(
                    context.as_deref(),
                    run_context.as_deref(),
                    instigated.as_deref(),
                ),
            })
            .collect();
        let same = context
            .as_ref()
            .is_some_and(|context| history.same_contexts.contains(context));
        let estimate = estimate_from_facts(
            HistoryFacts {
                seconds: &history.seconds,
                successes: history.successes,
                same_context: same,
                dependency_runs: &dependency_runs,
            },
            context.as_deref(),
            |relations| {
                satisfied
                    .get(&relations.to_string())
                    .copied()
                    .unwrap_or(false)
            },
        );
        let duration = estimate.duration.unwrap_or_else(|| {
            codebase_averages
                .get(&candidate.codebase)
                .or_else(|| campaign_averages.get(&candidate.campaign))
                .copied()
                .unwrap_or(DEFAULT_ESTIMATED_DURATION)
        });
        let offset = match calculate_offset(&OffsetInputs {
            estimated_duration: duration,
            normalized_codebase_value: Some(normalized),
            probability_of_success: estimate.probability_of_success,
            candidate_value: value,
            total_previous_runs: estimate.total_previous_runs,
        }) {
            Ok(offset) => offset,
            Err(error) => {
                summary.skipped.push(Skipped {
                    reason: ScheduleError::Offset {
                        campaign: candidate.campaign.clone(),
                        codebase: candidate.codebase.clone(),
                        source: error,
                    }
                    .to_string(),
                    codebase: candidate.codebase,
                    campaign: candidate.campaign,
                });
                continue;
            }
        };
        // A dry run still emulates the queue, so its summary says what would happen.
        let (row_id, bucket, outcome) = queue.add(
            &candidate.codebase,
            &candidate.campaign,
            QueueRow {
                id: RowId::Slot(0),
                bucket: bucket_index("default"),
                priority: offset.trunc() as i64,
                state: RowState::Inserted,
                command: candidate.command,
                context,
                estimated_duration: duration,
                requester: "scheduler".to_string(),
                loaded: None,
            },
        );
        let counts = summary.buckets.entry(bucket.clone()).or_default();
        match outcome {
            Outcome::Added => counts.added += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
        // From a snapshot, every candidate's row is compared, a row left alone too.
        if !matches!(outcome, Outcome::Unchanged) || options.before.is_some() {
            summary
                .rows
                .push(queue.scheduled_row(&candidate.codebase, &candidate.campaign));
        }
        row_ids.push(row_id);
        summary.scheduled.push((candidate.id, offset, -1, bucket));
    }
    progress(total, total);
    tracing::debug!(elapsed = ?started.elapsed(), "candidates scheduled in memory");
    // A key upserted twice (candidates that differ only in change set) is written once, as
    // it ends up.
    summary.rows = final_rows(std::mem::take(&mut summary.rows));
    if let Some(theirs) = theirs {
        let unchanged = match options.before {
            Some(_) => 0,
            None => summary.buckets.values().map(|c| c.unchanged).sum(),
        };
        summary.shadow = Some(super::shadow::compare(&summary.rows, theirs, unchanged));
    }
    if !writes {
        for entry in &mut summary.scheduled {
            entry.3 = "default".to_string();
        }
    } else {
        let sequence = queue.write(&mut tx).await?;
        tx.commit().await?;
        tracing::debug!(elapsed = ?started.elapsed(), "queue written");
        for (entry, row_id) in summary.scheduled.iter_mut().zip(row_ids) {
            entry.2 = match row_id {
                RowId::Known(id) => id,
                RowId::Slot(slot) => sequence[slot],
            };
        }
    }
    Ok(summary)
}

/// The last row of each key, at the place of its first.
fn final_rows(rows: Vec<ScheduledRow>) -> Vec<ScheduledRow> {
    let mut position: HashMap<Pair, usize> = HashMap::new();
    let mut kept: Vec<ScheduledRow> = Vec::with_capacity(rows.len());
    for row in rows {
        let key = (row.codebase.clone(), row.campaign.clone());
        match position.get(&key) {
            Some(&at) => kept[at] = row,
            None => {
                position.insert(key, kept.len());
                kept.push(row);
            }
        }
    }
    kept
}

/// The static checks, in the order the Python would fail them, and the base-candidate
/// re-read of `do_schedule_regular`.
fn prepare(
    candidate: CandidateRow,
    values: &HashMap<String, i64>,
    max_value: Option<i64>,
    base: &HashMap<Pair, (Option<i32>, Option<String>)>,
) -> Result<Prepared, Skipped> {
    let skip = |candidate: &CandidateRow, reason: String| Skipped {
        codebase: candidate.codebase.clone(),
        campaign: candidate.campaign.clone(),
        reason,
    };
    if candidate.policy_is_null {
        return Err(skip(
            &candidate,
            "publish policy has no per-branch policy".into(),
        ));
    }
    // The bulk value: the candidate's plus each publish mode's.
    let mut value = candidate.value.map(i64::from);
    for mode in candidate.modes.iter() {
        match (mode.as_deref().and_then(publish_mode_value), value) {
            (Some(extra), Some(v)) => value = Some(v + extra),
            (Some(_), None) => {
                return Err(skip(
                    &candidate,
                    "candidate has no value but its policy has entries".into(),
                ));
            }
            (None, _) => {
                let reason = format!(
                    "publish mode {} has no scheduling value",
                    mode.as_deref().unwrap_or("NULL")
                );
                return Err(skip(&candidate, reason));
            }
        }
    }
    let normalized = match max_value {
        None => 1.0,
        Some(0) => {
            return Err(skip(
                &candidate,
                ScheduleError::ZeroMaximumValue.to_string(),
            ));
        }
        Some(max) => {
            (values.get(&candidate.codebase).copied().unwrap_or(0) as f64 / max as f64).min(1.0)
        }
    };
    let mut context = candidate.context.clone();
    if value.is_none() || candidate.success_chance.is_none() {
        let key = (candidate.codebase.clone(), candidate.campaign.clone());
        let Some((base_value, base_context)) = base.get(&key) else {
            let reason = ScheduleError::CandidateUnavailable {
                campaign: candidate.campaign.clone(),
                codebase: candidate.codebase.clone(),
            }
            .to_string();
            return Err(skip(&candidate, reason));
        };
        value = value.or(base_value.map(i64::from));
        if context.is_none() {
            context.clone_from(base_context);
        }
    }
    Ok(Prepared {
        candidate,
        value,
        normalized,
        context,
    })
}

async fn load_candidates(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<Vec<CandidateRow>, sqlx::Error> {
    // The few named policies are read once rather than unnested for every candidate.
    let (records, policies) = tokio::try_join!(
        sqlx::query_as::<_, CandidateRow>(
            "SELECT candidate.id, codebase.name AS codebase, candidate.suite::text AS campaign,
                    candidate.context, candidate.value, candidate.success_chance,
                    candidate.command, candidate.publish_policy
             FROM candidate
             JOIN codebase ON codebase.name = candidate.codebase
             WHERE ($1::text[] IS NULL OR codebase.name = ANY($1))
               AND ($2::text IS NULL OR candidate.suite = $2)
             ORDER BY candidate.id",
        )
        .bind(codebases)
        .bind(campaign)
        .fetch_all(pool),
        sqlx::query_as::<_, (String, bool, Vec<Option<String>>)>(
            "SELECT name, per_branch_policy IS NULL,
                    ARRAY(SELECT (entry).mode::text FROM unnest(per_branch_policy) AS entry)
             FROM named_publish_policy",
        )
        .fetch_all(pool),
    )?;
    let policies: HashMap<String, PolicyModes> = policies
        .into_iter()
        .map(|(name, is_null, modes)| (name, (is_null, modes.into())))
        .collect();
    // A candidate without a (known) policy is not scheduled, as the inner join in Python.
    Ok(records
        .into_iter()
        .filter_map(|mut candidate| {
            let (policy_is_null, modes) = policies.get(candidate.publish_policy.as_deref()?)?;
            candidate.policy_is_null = *policy_is_null;
            candidate.modes = modes.clone();
            Some(candidate)
        })
        .collect())
}

/// Codebase values as the bulk path normalises them (NULL counts as 0).
async fn load_codebase_values(pool: &PgPool) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, Option<i32>)> =
        sqlx::query_as("SELECT name, value FROM codebase WHERE name IS NOT NULL")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, value)| (name, i64::from(value.unwrap_or(0))))
        .collect())
}

/// Base candidates (no change set), re-read when a success chance is missing.
async fn load_base_candidates(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<HashMap<Pair, (Option<i32>, Option<String>)>, sqlx::Error> {
    let rows: Vec<(String, String, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT codebase, suite::text, value, context FROM candidate
         WHERE coalesce(change_set, '') = ''
           AND ($1::text[] IS NULL OR codebase = ANY($1))
           AND ($2::text IS NULL OR suite = $2)",
    )
    .bind(codebases)
    .bind(campaign)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(codebase, campaign, value, context)| ((codebase, campaign), (value, context)))
        .collect())
}

/// The runs the estimator counts: non-transient, with both times, and not a worker failure
/// that started a day or more before `now` ($3).
const COUNTED_RUN: &str = "failure_transient IS NOT TRUE
     AND start_time IS NOT NULL AND finish_time IS NOT NULL
     AND NOT (result_code = 'worker-failure' AND start_time <= $3 - interval '1 day')";

type HistoryRow = (String, String, Option<Vec<f64>>, i64, Option<PgInterval>);

/// Per (codebase, campaign), in one pass over the non-transient runs: the counted runs'
/// durations newest first (as float seconds, which PostgreSQL rounds exactly as Python's
/// `total_seconds()`), the successes, and the codebase's average duration over all
/// campaigns (`sum / count` is how `AVG(interval)` computes it); plus the
/// unsatisfied-dependencies runs.
async fn load_histories(
    pool: &PgPool,
    now: NaiveDateTime,
    pivot: Option<&str>,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<HashMap<Pair, PairHistory>, sqlx::Error> {
    // Two halves, split at the middle codebase, on two connections, so both cores work on it
    // and each scans only its range of the (codebase, suite) index. The halves are
    // complementary under any collation.
    let aggregated = format!(
        "SELECT run.codebase, run.suite::text,
                array_agg(extract(epoch FROM finish_time - start_time)::float8
                          ORDER BY start_time DESC) FILTER (WHERE counted),
                count(*) FILTER (WHERE counted AND result_code = 'success'),
                sum(sum(finish_time - start_time)) OVER codebase
                  / nullif(sum(count(finish_time - start_time)) OVER codebase, 0)::float8
         FROM (SELECT *, ({COUNTED_RUN}) AS counted FROM run
               WHERE failure_transient IS NOT TRUE
                 AND ($1::text[] IS NULL OR codebase = ANY($1))
                 AND ($2::text IS NULL OR suite = $2)
                 AND CASE WHEN $4::text IS NULL THEN $5 ELSE (codebase < $4) = $5 END) AS run
         GROUP BY run.codebase, run.suite
         WINDOW codebase AS (PARTITION BY run.codebase)"
    );
    let half = |below: bool| {
        sqlx::query_as::<_, HistoryRow>(sqlx::AssertSqlSafe(aggregated.clone()))
            .bind(codebases)
            .bind(campaign)
            .bind(now)
            .bind(pivot)
            .bind(below)
            .fetch_all(pool)
    };
    let dependencies = format!(
        "SELECT codebase, suite::text, context, instigated_context, failure_details::jsonb
         FROM run
         WHERE result_code = '{UNSATISFIED_DEPENDENCIES}' AND {COUNTED_RUN}
           AND ($1::text[] IS NULL OR codebase = ANY($1))
           AND ($2::text IS NULL OR suite = $2)"
    );
    type DependencyRow = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<serde_json::Value>,
    );
    let (first, second, dependency_rows) = tokio::try_join!(
        half(true),
        half(false),
        sqlx::query_as::<_, DependencyRow>(sqlx::AssertSqlSafe(dependencies))
            .bind(codebases)
            .bind(campaign)
            .bind(now)
            .fetch_all(pool),
    )?;
    let mut histories: HashMap<Pair, PairHistory> = HashMap::new();
    for (codebase, campaign, seconds, successes, average) in first.into_iter().chain(second) {
        histories.insert(
            (codebase, campaign),
            PairHistory {
                seconds: seconds.unwrap_or_default(),
                successes: u32::try_from(successes).unwrap_or(u32::MAX),
                dependency_runs: Vec::new(),
                same_contexts: HashSet::new(),
                codebase_average: average.as_ref().map(Micros::from_interval),
            },
        );
    }
    for (codebase, campaign, context, instigated, details) in dependency_rows {
        let relations = details
            .as_ref()
            .and_then(|details| details.get("relations"))
            .filter(|relations| crate::models::is_truthy(relations))
            .cloned();
        histories
            .entry((codebase, campaign))
            .or_default()
            .dependency_runs
            .push((context, instigated, relations));
    }
    Ok(histories)
}

/// Of the wanted (codebase, campaign, context) triples, those some counted run other than an
/// unsatisfied-dependencies one shares.
async fn load_same_context(
    pool: &PgPool,
    now: NaiveDateTime,
    wanted: &HashSet<(String, String, String)>,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let (mut codebases, mut campaigns, mut contexts) = (Vec::new(), Vec::new(), Vec::new());
    for (codebase, campaign, context) in wanted {
        codebases.push(codebase.as_str());
        campaigns.push(campaign.as_str());
        contexts.push(context.as_str());
    }
    let statement = format!(
        "SELECT w.codebase, w.campaign, w.context
         FROM unnest($1::text[], $2::text[], $4::text[]) AS w(codebase, campaign, context)
         WHERE EXISTS (
           SELECT 1 FROM run
           WHERE run.codebase = w.codebase AND run.suite = w.campaign
             AND (run.context = w.context OR run.instigated_context = w.context)
             AND result_code <> '{UNSATISFIED_DEPENDENCIES}' AND {COUNTED_RUN})"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(&codebases)
        .bind(&campaigns)
        .bind(now)
        .bind(&contexts)
        .fetch_all(pool)
        .await
}

/// Whether each distinct set of recorded relations is satisfiable now, by its JSON text.
async fn check_dependencies(
    pool: &PgPool,
    histories: &HashMap<Pair, PairHistory>,
) -> Result<HashMap<String, bool>, sqlx::Error> {
    let mut satisfied = HashMap::new();
    let mut conn = None;
    for history in histories.values() {
        for relations in history
            .dependency_runs
            .iter()
            .filter_map(|run| run.2.as_ref())
        {
            let key = relations.to_string();
            if satisfied.contains_key(&key) {
                continue;
            }
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(pool.acquire().await?),
            };
            let ok = deps_satisfied(conn, relations).await?;
            satisfied.insert(key, ok);
        }
    }
    Ok(satisfied)
}

/// Duration fallbacks for candidates without counted runs: the codebase's average over all
/// campaigns, else the campaign's over all codebases, averaged in SQL for the same rounding.
/// Only the codebases and campaigns some candidate falls back to are averaged.
async fn load_averages(
    pool: &PgPool,
    prepared: &[Prepared],
    histories: &HashMap<Pair, PairHistory>,
    codebase_averages_read: bool,
) -> Result<(HashMap<String, Micros>, HashMap<String, Micros>), sqlx::Error> {
    let without_history: Vec<&Prepared> = prepared
        .iter()
        .filter(|ready| {
            let key = (
                ready.candidate.codebase.clone(),
                ready.candidate.campaign.clone(),
            );
            histories.get(&key).is_none_or(|h| h.seconds.is_empty())
        })
        .collect();
    let codebases: HashSet<&str> = without_history
        .iter()
        .map(|ready| ready.candidate.codebase.as_str())
        .collect();
    // Without a campaign filter the history query saw every run of these codebases and
    // averaged them already; a codebase it has no row for has no non-transient run.
    let codebase_averages = if codebase_averages_read {
        histories
            .iter()
            .filter(|((codebase, _), _)| codebases.contains(codebase.as_str()))
            .filter_map(|((codebase, _), h)| Some((codebase.clone(), h.codebase_average?)))
            .collect()
    } else {
        averages(pool, "codebase", codebases.into_iter().collect()).await?
    };
    let campaigns: HashSet<&str> = without_history
        .iter()
        .filter(|ready| !codebase_averages.contains_key(&ready.candidate.codebase))
        .map(|ready| ready.candidate.campaign.as_str())
        .collect();
    let campaign_averages = averages(pool, "suite", campaigns.into_iter().collect()).await?;
    Ok((codebase_averages, campaign_averages))
}

/// Non-transient `AVG(finish_time - start_time)` per value of `column` among `keys`.
async fn averages(
    pool: &PgPool,
    column: &'static str,
    keys: Vec<&str>,
) -> Result<HashMap<String, Micros>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // `column` is one of two fixed names, never input.
    let statement = format!(
        "SELECT {column}::text, AVG(finish_time - start_time) FROM run
         WHERE failure_transient IS NOT TRUE AND {column} = ANY($1::text[])
         GROUP BY {column}"
    );
    let rows: Vec<(String, Option<PgInterval>)> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(keys)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, average)| Some((key, Micros::from_interval(&average?))))
        .collect())
}

enum Outcome {
    Added,
    Updated,
    Unchanged,
}

/// The queue as the emulated upserts see it. Bulk rows have no change set, so a row is
/// identified by (codebase, campaign) among the rows whose change set is NULL or `''`.
struct QueueState {
    rows: HashMap<(String, String), QueueRow>,
    priorities: Priorities,
    /// Sequence values used up so far (one per upsert); fetched when written.
    upserts: usize,
}

impl QueueSnapshot {
    async fn read(conn: &mut sqlx::PgConnection) -> Result<Self, sqlx::Error> {
        // Only rows without a change set can be hit by a bulk upsert, so only those are read.
        // The others never change here, so for MIN(priority) their smallest stands for all.
        let others_min: Option<i64> = sqlx::query_scalar(
            "SELECT min(priority) FROM queue WHERE coalesce(change_set, '') <> ''",
        )
        .fetch_one(&mut *conn)
        .await?;
        let rows: Vec<LoadedRow> = sqlx::query_as(
            "SELECT id, codebase, suite::text AS campaign, bucket::text AS bucket, priority,
                    command, context,
                    (extract(epoch FROM estimated_duration) * 1000000)::bigint AS duration,
                    requester, refresh
             FROM queue WHERE coalesce(change_set, '') = ''",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self { others_min, rows })
    }
}

impl QueueState {
    async fn load(conn: &mut sqlx::PgConnection) -> Result<Self, sqlx::Error> {
        Ok(Self::from_snapshot(QueueSnapshot::read(conn).await?))
    }

    fn from_snapshot(snapshot: QueueSnapshot) -> Self {
        let QueueSnapshot { others_min, rows } = snapshot;
        let mut state = Self {
            rows: HashMap::with_capacity(rows.len()),
            priorities: Priorities::default(),
            upserts: 0,
        };
        if let Some(priority) = others_min {
            state.priorities.insert(priority);
        }
        for row in rows {
            state.priorities.insert(row.priority);
            let bucket = bucket_index(&row.bucket);
            state.rows.insert(
                (row.codebase.clone(), row.campaign.clone()),
                QueueRow {
                    id: RowId::Known(i64::from(row.id)),
                    bucket,
                    priority: row.priority,
                    state: RowState::Untouched,
                    command: row.command.clone().unwrap_or_default(),
                    context: row.context.clone(),
                    estimated_duration: Micros(row.duration.unwrap_or(0)),
                    requester: row.requester.clone().unwrap_or_default(),
                    loaded: Some(Box::new(row)),
                },
            );
        }
        state
    }

    /// A row as the comparison and the callers see it.
    fn scheduled_row(&self, codebase: &str, campaign: &str) -> ScheduledRow {
        let key = (codebase.to_string(), campaign.to_string());
        let row = &self.rows[&key];
        row.as_scheduled(key)
    }

    /// The rows of these candidates, as they are.
    fn rows_of(&self, keys: &HashSet<Pair>) -> HashMap<Pair, ScheduledRow> {
        keys.iter()
            .filter_map(|key| Some((key.clone(), self.rows.get(key)?.as_scheduled(key.clone()))))
            .collect()
    }

    /// Takes out the rows of these candidates that a bulk upsert would replace (those in the
    /// `default` bucket or a less urgent one): the shadow comparison's other side.
    fn take_rewritable(&mut self, keys: &HashSet<Pair>) -> HashMap<Pair, ScheduledRow> {
        let default = bucket_index("default");
        let mut taken = HashMap::new();
        for key in keys {
            if self.rows.get(key).is_some_and(|row| row.bucket >= default) {
                if let Some(row) = self.rows.remove(key) {
                    self.priorities.remove(row.priority);
                    taken.insert(key.clone(), row.as_scheduled(key.clone()));
                }
            }
        }
        taken
    }

    /// One `Queue.add`: `new.priority` holds the truncated offset.
    fn add(
        &mut self,
        codebase: &str,
        campaign: &str,
        mut new: QueueRow,
    ) -> (RowId, String, Outcome) {
        let sequence_slot = self.upserts;
        self.upserts += 1;
        new.priority += self.priorities.min();
        let key = (codebase.to_string(), campaign.to_string());
        match self.rows.get_mut(&key) {
            None => {
                new.id = RowId::Slot(sequence_slot);
                new.state = RowState::Inserted;
                self.priorities.insert(new.priority);
                let bucket = QUEUE_BUCKETS[new.bucket].to_string();
                let id = new.id;
                self.rows.insert(key, new);
                (id, bucket, Outcome::Added)
            }
            Some(existing) => {
                if existing.bucket >= new.bucket
                    || (existing.bucket == new.bucket && existing.priority >= new.priority)
                {
                    self.priorities.remove(existing.priority);
                    self.priorities.insert(new.priority);
                    existing.bucket = new.bucket;
                    existing.priority = new.priority;
                    existing.command = new.command;
                    existing.context = new.context;
                    existing.estimated_duration = new.estimated_duration;
                    existing.requester = new.requester;
                    if existing.state == RowState::Untouched {
                        existing.state = RowState::Updated;
                    }
                    (
                        existing.id,
                        QUEUE_BUCKETS[existing.bucket].to_string(),
                        Outcome::Updated,
                    )
                } else {
                    (
                        existing.id,
                        QUEUE_BUCKETS[existing.bucket].to_string(),
                        Outcome::Unchanged,
                    )
                }
            }
        }
    }

    /// Uses up one sequence value per upsert (as Python's statements did), writes every
    /// inserted and updated row, and returns the sequence values by slot.
    async fn write(&self, conn: &mut sqlx::PgConnection) -> Result<Vec<i64>, sqlx::Error> {
        let mut sequence: Vec<i64> = sqlx::query_scalar(
            "SELECT coalesce(array_agg(nextval('queue_id_seq')::bigint), '{}')
             FROM generate_series(1, $1::int)",
        )
        .bind(i32::try_from(self.upserts).unwrap_or(i32::MAX))
        .fetch_one(&mut *conn)
        .await?;
        sequence.sort_unstable();
        let id_of = |row: &QueueRow| -> i32 {
            let id = match row.id {
                RowId::Known(id) => id,
                RowId::Slot(slot) => sequence[slot],
            };
            i32::try_from(id).unwrap_or(i32::MAX)
        };
        let mut new = Columns::default();
        let mut changed = Columns::default();
        for (key, row) in &self.rows {
            match row.state {
                RowState::Inserted => new.push(key, row, id_of(row)),
                RowState::Updated if !row.same_as_loaded() => changed.push(key, row, id_of(row)),
                RowState::Updated => {}
                RowState::Untouched => {}
            }
        }
        sqlx::query(
            "INSERT INTO queue (id, codebase, suite, command, priority, bucket, context,
                                estimated_duration, refresh, requester)
             SELECT id, codebase, suite, command, priority, bucket::queue_bucket, context,
                    make_interval(days => days) + micros * interval '1 microsecond', false,
                    requester
             FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::int[], $9::bigint[], $10::text[])
                  AS t(id, codebase, suite, command, priority, bucket, context, days, micros,
                       requester)",
        )
        .bind(&new.id)
        .bind(&new.codebase)
        .bind(&new.campaign)
        .bind(&new.command)
        .bind(&new.priority)
        .bind(&new.bucket)
        .bind(&new.context)
        .bind(&new.days)
        .bind(&new.micros)
        .bind(&new.requester)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE queue SET command = t.command, priority = t.priority,
                    bucket = t.bucket::queue_bucket, context = t.context,
                    estimated_duration = make_interval(days => t.days)
                                         + t.micros * interval '1 microsecond',
                    refresh = false, requester = t.requester
             FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::int[], $7::bigint[], $8::text[])
                  AS t(id, command, priority, bucket, context, days, micros, requester)
             WHERE queue.id = t.id",
        )
        .bind(&changed.id)
        .bind(&changed.command)
        .bind(&changed.priority)
        .bind(&changed.bucket)
        .bind(&changed.context)
        .bind(&changed.days)
        .bind(&changed.micros)
        .bind(&changed.requester)
        .execute(&mut *conn)
        .await?;
        Ok(sequence)
    }
}

/// Rows as column arrays, for `unnest`.
#[derive(Debug, Default)]
struct Columns {
    id: Vec<i32>,
    codebase: Vec<String>,
    campaign: Vec<String>,
    command: Vec<String>,
    priority: Vec<i64>,
    bucket: Vec<String>,
    context: Vec<Option<String>>,
    /// The duration as asyncpg encodes a timedelta: whole days and the rest in microseconds.
    days: Vec<i32>,
    micros: Vec<i64>,
    requester: Vec<String>,
}

impl Columns {
    fn push(&mut self, key: &(String, String), row: &QueueRow, id: i32) {
        let interval = row.estimated_duration.to_interval();
        self.id.push(id);
        self.codebase.push(key.0.clone());
        self.campaign.push(key.1.clone());
        self.command.push(row.command.clone());
        self.priority.push(row.priority);
        self.bucket.push(QUEUE_BUCKETS[row.bucket].to_string());
        self.context.push(row.context.clone());
        self.days.push(interval.days);
        self.micros.push(interval.microseconds);
        self.requester.push(row.requester.clone());
    }
}
