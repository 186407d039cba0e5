//! The bulk scheduler (`janitor.schedule`, queue-and-scheduling.md §2.2 and §8): every
//! candidate with a publish policy, in `candidate.id` order, scheduled as the Python's sequential
//! `do_schedule_regular` calls would, but with the history and averages read in a few set
//! queries and the queue upserts emulated in memory (the evolving `MIN(priority)`, one
//! sequence value per upsert, the bucket rule) and written in one transaction.
//!
//! Where the Python raises (a `push-derived` or NULL publish mode, a NULL value with a policy,
//! a NULL policy, every codebase value zero, no base candidate to re-read, an offset
//! assertion), the candidate is skipped and named in the summary; the others are scheduled
//! exactly as the Python would have.
//!
//! Entry points: [`bulk_schedule`] and, for shadow runs, [`snapshot_queue`]. `history` reads
//! what the estimates need before the queue is locked; `emulate` holds the queue in memory
//! and writes it back.

mod emulate;
mod history;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::NaiveDateTime;
use sqlx::{Acquire, PgPool};

use self::emulate::{Outcome, QueueRow, QueueState, RowId};
use self::history::{Inputs, Prepared};
use super::engine::ScheduleError;
use super::offset::{OffsetInputs, calculate_offset};
use crate::db;

pub use self::emulate::QueueSnapshot;

/// A (codebase, campaign): what a bulk queue row is identified by.
type Pair = (String, String);

/// What a bulk run schedules, and whether it writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOptions {
    /// Only this campaign (all when `None`).
    pub campaign: Option<String>,
    /// Only these codebases (all when empty).
    pub codebases: Vec<String>,
    /// Work out and report what would be scheduled, writing nothing.
    pub dry_run: bool,
    /// Compare the rows it would write with the queue's, writing nothing (`shadow`).
    pub shadow: bool,
    /// For `shadow`: the queue as the Python scheduler found it (a [`QueueSnapshot`] taken
    /// before its run), to start from; without it, the queue as it is, minus the rows
    /// compared.
    pub before: Option<QueueSnapshot>,
}

/// A queue row the bulk scheduler writes (or would write).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduledRow {
    /// The codebase to work on.
    pub codebase: String,
    /// The campaign to run.
    pub campaign: String,
    /// The queue bucket the row is in.
    pub bucket: String,
    /// Its priority within the bucket (lower goes first).
    pub priority: i64,
    /// The command the worker is to run.
    pub command: String,
    /// The context the candidate is scheduled with.
    pub context: Option<String>,
    /// How long the run is estimated to take, in microseconds.
    pub estimated_duration_us: i64,
    /// Who asked for the row (`scheduler` for the bulk scheduler's own).
    pub requester: String,
}

/// A candidate the Python would have crashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The candidate's codebase.
    pub codebase: String,
    /// The candidate's campaign.
    pub campaign: String,
    /// What the Python would have crashed on.
    pub reason: String,
}

/// Per bucket: rows added, rows updated, and requests that left an existing row alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Rows added.
    pub added: usize,
    /// Rows updated.
    pub updated: usize,
    /// Requests that left an existing row alone.
    pub unchanged: usize,
}

/// What a bulk run did (or, on a dry run or shadow run, would have done).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkSummary {
    /// How many candidates were read.
    pub candidates: usize,
    /// What happened to the queue rows, by bucket.
    pub buckets: BTreeMap<String, BucketCounts>,
    /// The candidates skipped where the Python would have crashed.
    pub skipped: Vec<Skipped>,
    /// What each scheduled candidate got, in candidate order: (candidate id, offset, queue
    /// id or −1 on a dry run, bucket; the requested one on a dry run, as Python reports).
    pub scheduled: Vec<(i32, f64, i64, String)>,
    /// The rows added or changed (or that would be, on a dry run), in candidate order.
    pub rows: Vec<ScheduledRow>,
    /// With `shadow`: how those rows compare with the queue's.
    pub shadow: Option<super::shadow::ShadowReport>,
}

/// Reads the queue as a bulk run would find it.
pub async fn snapshot_queue(pool: &PgPool) -> Result<QueueSnapshot, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    QueueSnapshot::read(&mut conn).await
}

/// Schedules every candidate; `progress(done, total)` is called now and then.
///
/// The reads run before the queue is locked, several at once on their own connections; the
/// lock is held only while the queue is loaded, emulated and written.
#[tracing::instrument(
    name = "bulk_schedule",
    skip_all,
    fields(
        campaign = options.campaign.as_deref(),
        dry_run = options.dry_run,
        candidates = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
)]
pub async fn bulk_schedule(
    pool: &PgPool,
    now: NaiveDateTime,
    options: &BulkOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BulkSummary, ScheduleError> {
    let started = Instant::now();
    let codebase_filter: Option<&[String]> =
        (!options.codebases.is_empty()).then_some(options.codebases.as_slice());
    let mut inputs =
        history::read_inputs(pool, now, codebase_filter, options.campaign.as_deref()).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "histories read");
    let mut summary = BulkSummary {
        candidates: inputs.candidates,
        skipped: std::mem::take(&mut inputs.skipped),
        ..BulkSummary::default()
    };
    tracing::Span::current().record("candidates", inputs.candidates);

    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let writes = !options.dry_run && !options.shadow;
    if writes {
        // Keeps other writers out while the emulated upserts are valid; readers go on.
        db::queue::lock_for_bulk(&mut tx).await?;
    }
    let mut queue = QueueState::load(&mut tx).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "queue locked and read");
    // Only a shadow run sets the compared rows aside; a real run pays nothing for it.
    let theirs = options
        .shadow
        .then(|| set_aside(&mut queue, &inputs.prepared, options.before.as_ref()));
    let row_ids = schedule_in_memory(
        &mut queue,
        &mut inputs,
        options,
        &mut summary,
        &mut progress,
    );
    // Freeing the histories (a few hundred thousand allocations) need not hold the lock.
    drop_in_background(inputs);
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
        drop_in_background(queue);
        return Ok(summary);
    }
    let sequence = queue.write(&mut tx).await?;
    tx.commit().await?;
    drop_in_background(queue);
    tracing::debug!(elapsed = ?started.elapsed(), "queue written");
    for (entry, row_id) in summary.scheduled.iter_mut().zip(row_ids) {
        entry.2 = match row_id {
            RowId::Known(id) => id,
            RowId::Slot(slot) => sequence[slot],
        };
    }
    tracing::Span::current().record(
        "duration_ms",
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    Ok(summary)
}

/// The other side of a shadow comparison: the rows of these candidates as the Python
/// scheduler left them. From a snapshot, the queue now is the Python's result and the run
/// starts from the one it found; otherwise the rows a bulk upsert would replace are taken
/// out of the queue.
fn set_aside(
    queue: &mut QueueState,
    prepared: &[Prepared],
    before: Option<&QueueSnapshot>,
) -> HashMap<Pair, ScheduledRow> {
    let keys: HashSet<Pair> = prepared.iter().map(Prepared::key).collect();
    match before {
        Some(before) => {
            let now = std::mem::replace(queue, QueueState::from_snapshot(before.clone()));
            now.rows_of(&keys)
        }
        None => queue.take_rewritable(&keys),
    }
}

/// Every prepared candidate's estimate, offset and upsert, in candidate order; returns the
/// row each scheduled candidate ended up in. A dry run still emulates the queue, so its
/// summary says what would happen.
fn schedule_in_memory(
    queue: &mut QueueState,
    inputs: &mut Inputs,
    options: &BulkOptions,
    summary: &mut BulkSummary,
    progress: &mut impl FnMut(usize, usize),
) -> Vec<RowId> {
    let prepared = std::mem::take(&mut inputs.prepared);
    let total = prepared.len();
    let mut row_ids = Vec::with_capacity(total);
    for (done, ready) in prepared.into_iter().enumerate() {
        if done % 1000 == 0 {
            progress(done, total);
        }
        let estimate = inputs.estimate(&ready);
        let duration = estimate
            .duration
            .unwrap_or_else(|| inputs.fallback_duration(&ready.candidate));
        let Prepared {
            candidate,
            value,
            normalized,
            context,
        } = ready;
        let offset = match calculate_offset(&OffsetInputs {
            estimated_duration: duration,
            normalized_codebase_value: Some(normalized),
            probability_of_success: estimate.probability_of_success,
            candidate_value: value,
            total_previous_runs: estimate.total_previous_runs,
        }) {
            Ok(offset) => offset,
            Err(source) => {
                summary.skipped.push(Skipped {
                    reason: ScheduleError::Offset {
                        campaign: candidate.campaign.clone(),
                        codebase: candidate.codebase.clone(),
                        source,
                    }
                    .to_string(),
                    codebase: candidate.codebase,
                    campaign: candidate.campaign,
                });
                continue;
            }
        };
        let row = QueueRow::requested(offset, candidate.command, context, duration);
        let (row_id, bucket, outcome) = queue.add(&candidate.codebase, &candidate.campaign, row);
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
    row_ids
}

/// The last row of each key, at the place of its first.
fn final_rows(rows: Vec<ScheduledRow>) -> Vec<ScheduledRow> {
    // Where each row ends up: its key's first place. Keys are borrowed, not cloned; keys
    // repeat rarely (candidates differing only in change set), so most runs stop here.
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(rows.len());
    let places: Vec<usize> = rows
        .iter()
        .enumerate()
        .map(|(at, row)| {
            *first
                .entry((row.codebase.as_str(), row.campaign.as_str()))
                .or_insert(at)
        })
        .collect();
    let distinct = first.len();
    drop(first);
    if distinct == rows.len() {
        return rows;
    }
    let mut slots: Vec<Option<ScheduledRow>> = (0..rows.len()).map(|_| None).collect();
    for (row, place) in rows.into_iter().zip(places) {
        slots[place] = Some(row);
    }
    slots.into_iter().flatten().collect()
}

/// Frees `value` on the blocking pool: large maps of strings take a noticeable time to free,
/// and the caller (holding the queue's lock, or awaited by a client) need not wait for it.
fn drop_in_background<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

#[cfg(test)]
mod tests {
    use super::{ScheduledRow, final_rows};

    fn row(codebase: &str, campaign: &str, priority: i64) -> ScheduledRow {
        ScheduledRow {
            codebase: codebase.to_string(),
            campaign: campaign.to_string(),
            bucket: "default".to_string(),
            priority,
            command: "true".to_string(),
            context: None,
            estimated_duration_us: 0,
            requester: "scheduler".to_string(),
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_row_at_its_first_place() {
        let rows = vec![
            row("a", "x", 1),
            row("b", "x", 2),
            row("a", "x", 3),
            row("a", "y", 4),
            row("b", "x", 5),
        ];
        let kept = final_rows(rows);
        let got: Vec<(&str, &str, i64)> = kept
            .iter()
            .map(|r| (r.codebase.as_str(), r.campaign.as_str(), r.priority))
            .collect();
        assert_eq!(got, [("a", "x", 3), ("b", "x", 5), ("a", "y", 4)]);
    }

    #[test]
    fn distinct_keys_are_kept_as_they_are() {
        let rows = vec![row("a", "x", 1), row("a", "y", 2), row("b", "x", 3)];
        assert_eq!(final_rows(rows.clone()), rows);
    }
}
