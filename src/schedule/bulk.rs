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

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use sqlx::postgres::types::PgInterval;
use sqlx::{Acquire, PgPool};

use super::engine::{FullEstimate, ScheduleError, deps_satisfied};
use super::offset::{OffsetInputs, calculate_offset};
use super::{DEFAULT_ESTIMATED_DURATION, Micros, PastRun, estimate_from_history};
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
}

#[derive(Debug, sqlx::FromRow)]
struct CandidateRow {
    id: i32,
    codebase: String,
    campaign: String,
    context: Option<String>,
    value: Option<i32>,
    success_chance: Option<f64>,
    command: String,
    policy_is_null: bool,
    modes: Vec<Option<String>>,
}

#[derive(Debug, sqlx::FromRow)]
struct HistoryRow {
    codebase: String,
    campaign: String,
    #[sqlx(flatten)]
    run: crate::db::runs::HistoryRow,
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

/// Schedules every candidate; `progress(done, total)` is called now and then.
pub async fn bulk_schedule(
    pool: &PgPool,
    now: NaiveDateTime,
    options: &BulkOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BulkSummary, ScheduleError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    if !options.dry_run {
        // Keeps other writers out while the emulated upserts are valid; readers go on.
        sqlx::query("LOCK TABLE queue IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    let codebase_filter: Option<&[String]> =
        (!options.codebases.is_empty()).then_some(options.codebases.as_slice());
    let candidates: Vec<CandidateRow> = sqlx::query_as(
        "SELECT candidate.id, codebase.name AS codebase, candidate.suite::text AS campaign,
                candidate.context, candidate.value, candidate.success_chance, candidate.command,
                named_publish_policy.per_branch_policy IS NULL AS policy_is_null,
                ARRAY(SELECT (entry).mode::text
                      FROM unnest(named_publish_policy.per_branch_policy) AS entry) AS modes
         FROM candidate
         JOIN codebase ON codebase.name = candidate.codebase
         JOIN named_publish_policy ON named_publish_policy.name = candidate.publish_policy
         WHERE ($1::text[] IS NULL OR codebase.name = ANY($1))
           AND ($2::text IS NULL OR candidate.suite = $2)
         ORDER BY candidate.id",
    )
    .bind(codebase_filter)
    .bind(options.campaign.as_deref())
    .fetch_all(&mut *tx)
    .await?;
    let mut summary = BulkSummary {
        candidates: candidates.len(),
        ..BulkSummary::default()
    };

    // Codebase values, normalised by the largest (NULL counts as 0).
    let values: HashMap<String, i64> = sqlx::query_as::<_, (String, Option<i32>)>(
        "SELECT name, value FROM codebase WHERE name IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(name, value)| (name, i64::from(value.unwrap_or(0))))
    .collect();
    let max_value = values.values().copied().max();

    // Base candidates, re-read when a success chance is missing (as `do_schedule_regular`).
    let base: HashMap<(String, String), (Option<i32>, Option<String>)> =
        sqlx::query_as::<_, (String, String, Option<i32>, Option<String>)>(
            "SELECT codebase, suite::text, value, context FROM candidate
             WHERE coalesce(change_set, '') = ''
               AND ($1::text[] IS NULL OR codebase = ANY($1))
               AND ($2::text IS NULL OR suite = $2)",
        )
        .bind(codebase_filter)
        .bind(options.campaign.as_deref())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(codebase, campaign, value, context)| ((codebase, campaign), (value, context)))
        .collect();

    // Histories, newest first per (codebase, campaign).
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT codebase, suite::text AS campaign, result_code, instigated_context, context,
                CASE WHEN result_code = 'install-deps-unsatisfied-dependencies'
                     THEN failure_details END AS failure_details,
                finish_time - start_time AS duration, start_time
         FROM run
         WHERE failure_transient IS NOT TRUE
           AND ($1::text[] IS NULL OR codebase = ANY($1))
           AND ($2::text IS NULL OR suite = $2)
         ORDER BY codebase, suite, start_time DESC",
    )
    .bind(codebase_filter)
    .bind(options.campaign.as_deref())
    .fetch_all(&mut *tx)
    .await?;
    let mut histories: HashMap<(String, String), Vec<PastRun>> = HashMap::new();
    for row in rows {
        if let Some(run) = super::engine::past_run(row.run) {
            histories
                .entry((row.codebase, row.campaign))
                .or_default()
                .push(run);
        }
    }

    // Duration fallbacks for candidates without history: per codebase (all campaigns), then
    // per campaign (all codebases), in SQL for the same rounding.
    let codebase_averages = averages(&mut tx, "codebase").await?;
    let campaign_averages = averages(&mut tx, "suite::text").await?;

    let mut queue = QueueState::load(&mut tx).await?;
    let mut row_ids = Vec::new();
    let total = candidates.len();
    for (done, candidate) in candidates.into_iter().enumerate() {
        if done % 1000 == 0 {
            progress(done, total);
        }
        let skip = |reason: String| Skipped {
            codebase: candidate.codebase.clone(),
            campaign: candidate.campaign.clone(),
            reason,
        };
        // The bulk value: the candidate's plus each publish mode's.
        let mut value = candidate.value.map(i64::from);
        if candidate.policy_is_null {
            summary
                .skipped
                .push(skip("publish policy has no per-branch policy".into()));
            continue;
        }
        let mut bad_mode = None;
        for mode in &candidate.modes {
            match (mode.as_deref().and_then(publish_mode_value), value) {
                (Some(extra), Some(v)) => value = Some(v + extra),
                (Some(_), None) => {
                    bad_mode = Some("candidate has no value but its policy has entries".into());
                    break;
                }
                (None, _) => {
                    bad_mode = Some(format!(
                        "publish mode {} has no scheduling value",
                        mode.as_deref().unwrap_or("NULL")
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = bad_mode {
            summary.skipped.push(skip(reason));
            continue;
        }
        let normalized = match max_value {
            None => 1.0,
            Some(0) => {
                summary
                    .skipped
                    .push(skip(ScheduleError::ZeroMaximumValue.to_string()));
                continue;
            }
            Some(max) => {
                (values.get(&candidate.codebase).copied().unwrap_or(0) as f64 / max as f64).min(1.0)
            }
        };
        let mut context = candidate.context.clone();
        if value.is_none() || candidate.success_chance.is_none() {
            let key = (candidate.codebase.clone(), candidate.campaign.clone());
            let Some((base_value, base_context)) = base.get(&key) else {
                summary.skipped.push(skip(
                    ScheduleError::CandidateUnavailable {
                        campaign: candidate.campaign.clone(),
                        codebase: candidate.codebase.clone(),
                    }
                    .to_string(),
                ));
                continue;
            };
            value = value.or(base_value.map(i64::from));
            if context.is_none() {
                context.clone_from(base_context);
            }
        }
        let key = (candidate.codebase.clone(), candidate.campaign.clone());
        let estimate = {
            let history = histories.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let mut checks = Vec::new();
            for run in history {
                if let Some(relations) = run.unsatisfied_relations()
                    && !run.ignored_at(now)
                {
                    checks.push((relations.clone(), deps_satisfied(&mut tx, relations).await?));
                }
            }
            let estimate = estimate_from_history(history, context.as_deref(), now, |r| {
                checks
                    .iter()
                    .find(|(c, _)| c == r)
                    .is_some_and(|(_, ok)| *ok)
            });
            FullEstimate {
                probability_of_success: estimate.probability_of_success,
                duration: estimate.duration.unwrap_or_else(|| {
                    codebase_averages
                        .get(&candidate.codebase)
                        .or_else(|| campaign_averages.get(&candidate.campaign))
                        .copied()
                        .unwrap_or(DEFAULT_ESTIMATED_DURATION)
                }),
                total_previous_runs: estimate.total_previous_runs,
            }
        };
        let offset = match calculate_offset(&OffsetInputs {
            estimated_duration: estimate.duration,
            normalized_codebase_value: Some(normalized),
            probability_of_success: estimate.probability_of_success,
            candidate_value: value,
            total_previous_runs: estimate.total_previous_runs,
        }) {
            Ok(offset) => offset,
            Err(error) => {
                summary.skipped.push(skip(
                    ScheduleError::Offset {
                        campaign: candidate.campaign.clone(),
                        codebase: candidate.codebase.clone(),
                        source: error,
                    }
                    .to_string(),
                ));
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
                command: candidate.command.clone(),
                context,
                estimated_duration: estimate.duration,
                requester: "scheduler".to_string(),
            },
        );
        let counts = summary.buckets.entry(bucket.clone()).or_default();
        match outcome {
            Outcome::Added => counts.added += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
        row_ids.push(row_id);
        summary.scheduled.push((candidate.id, offset, -1, bucket));
    }
    progress(total, total);
    if options.dry_run {
        for entry in &mut summary.scheduled {
            entry.3 = "default".to_string();
        }
    } else {
        let sequence = queue.write(&mut tx).await?;
        tx.commit().await?;
        for (entry, row_id) in summary.scheduled.iter_mut().zip(row_ids) {
            entry.2 = match row_id {
                RowId::Known(id) => id,
                RowId::Slot(slot) => sequence[slot],
            };
        }
    }
    Ok(summary)
}

async fn averages(
    conn: &mut sqlx::PgConnection,
    column: &'static str,
) -> Result<HashMap<String, Micros>, sqlx::Error> {
    // `column` is one of two fixed names, never input.
    let statement = format!(
        "SELECT {column}, AVG(finish_time - start_time) FROM run
         WHERE failure_transient IS NOT TRUE GROUP BY 1"
    );
    let rows: Vec<(Option<String>, Option<PgInterval>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(statement))
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, average)| Some((key?, Micros::from_interval(&average?))))
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

impl QueueState {
    async fn load(conn: &mut sqlx::PgConnection) -> Result<Self, sqlx::Error> {
        let rows: Vec<(i32, String, String, bool, String, i64)> = sqlx::query_as(
            "SELECT id, codebase, suite::text, coalesce(change_set, '') = '', bucket::text,
                    priority
             FROM queue",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut state = Self {
            rows: HashMap::new(),
            priorities: Priorities::default(),
            upserts: 0,
        };
        for (id, codebase, campaign, base, bucket, priority) in rows {
            state.priorities.insert(priority);
            if base {
                state.rows.insert(
                    (codebase, campaign),
                    QueueRow {
                        id: RowId::Known(i64::from(id)),
                        bucket: bucket_index(&bucket),
                        priority,
                        state: RowState::Untouched,
                        command: String::new(),
                        context: None,
                        estimated_duration: Micros(0),
                        requester: String::new(),
                    },
                );
            }
        }
        Ok(state)
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
            "SELECT nextval('queue_id_seq')::bigint FROM generate_series(1, $1::int)",
        )
        .bind(i32::try_from(self.upserts).unwrap_or(i32::MAX))
        .fetch_all(&mut *conn)
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
                RowState::Updated => changed.push(key, row, id_of(row)),
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
