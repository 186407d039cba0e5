//! The in-memory queue of a bulk run: the upserts Python's `Queue.add` would make, one after
//! another (the evolving `MIN(priority)`, one sequence value per upsert, the bucket rule),
//! then written back in two statements.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Pair, ScheduledRow};
use crate::db;
use crate::db::queue::{BulkRow, QueueColumns};
use crate::names::QUEUE_BUCKETS;
use crate::schedule::Micros;

/// The queue rows a bulk run reads (those without a change set, and the lowest priority of
/// the others), kept to start a later shadow comparison from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    others_min: Option<i64>,
    rows: Vec<BulkRow>,
}

impl QueueSnapshot {
    pub(super) async fn read(conn: &mut sqlx::PgConnection) -> Result<Self, sqlx::Error> {
        let (others_min, rows) = db::queue::bulk_rows(conn).await?;
        Ok(Self { others_min, rows })
    }
}

/// A queue row's id: known, or the n-th sequence value this run uses up (fetched when the
/// rows are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowId {
    Known(i64),
    Slot(usize),
}

/// A queue row as the emulation tracks it.
#[derive(Debug, Clone)]
pub(super) struct QueueRow {
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
    loaded: Option<Box<BulkRow>>,
}

impl QueueRow {
    /// The row a scheduler upsert asks for: bucket `default`, its truncated offset as the
    /// priority (the queue's lowest is added when it is applied).
    pub(super) fn requested(
        offset: f64,
        command: String,
        context: Option<String>,
        estimated_duration: Micros,
    ) -> Self {
        Self {
            id: RowId::Slot(0),
            bucket: bucket_index("default"),
            priority: offset.trunc() as i64,
            state: RowState::Inserted,
            command,
            context,
            estimated_duration,
            requester: "scheduler".to_string(),
            loaded: None,
        }
    }

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
pub(super) enum RowState {
    Untouched,
    Inserted,
    Updated,
}

pub(super) fn bucket_index(name: &str) -> usize {
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

pub(super) enum Outcome {
    Added,
    Updated,
    Unchanged,
}

/// The queue as the emulated upserts see it. Bulk rows have no change set, so a row is
/// identified by (codebase, campaign) among the rows whose change set is NULL or `''`.
pub(super) struct QueueState {
    rows: HashMap<(String, String), QueueRow>,
    priorities: Priorities,
    /// Sequence values used up so far (one per upsert); fetched when written.
    upserts: usize,
}

impl QueueState {
    pub(super) async fn load(conn: &mut sqlx::PgConnection) -> Result<Self, sqlx::Error> {
        Ok(Self::from_snapshot(QueueSnapshot::read(conn).await?))
    }

    pub(super) fn from_snapshot(snapshot: QueueSnapshot) -> Self {
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
    pub(super) fn scheduled_row(&self, codebase: &str, campaign: &str) -> ScheduledRow {
        let key = (codebase.to_string(), campaign.to_string());
        let row = &self.rows[&key];
        row.as_scheduled(key)
    }

    /// The rows of these candidates, as they are.
    pub(super) fn rows_of(&self, keys: &HashSet<Pair>) -> HashMap<Pair, ScheduledRow> {
        keys.iter()
            .filter_map(|key| Some((key.clone(), self.rows.get(key)?.as_scheduled(key.clone()))))
            .collect()
    }

    /// Takes out the rows of these candidates that a bulk upsert would replace (those in the
    /// `default` bucket or a less urgent one): the shadow comparison's other side.
    pub(super) fn take_rewritable(&mut self, keys: &HashSet<Pair>) -> HashMap<Pair, ScheduledRow> {
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
    pub(super) fn add(
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
    pub(super) async fn write(
        &self,
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let sequence = db::queue::take_ids(&mut *conn, self.upserts).await?;
        let id_of = |row: &QueueRow| -> i32 {
            let id = match row.id {
                RowId::Known(id) => id,
                RowId::Slot(slot) => sequence[slot],
            };
            i32::try_from(id).unwrap_or(i32::MAX)
        };
        let mut inserted = Vec::new();
        let mut updated = Vec::new();
        for (key, row) in &self.rows {
            match row.state {
                RowState::Inserted => inserted.push((key, row, id_of(row))),
                RowState::Updated if !row.same_as_loaded() => updated.push((key, row, id_of(row))),
                RowState::Updated | RowState::Untouched => {}
            }
        }
        // Written in the order of the queue's run-order index rather than the map's: the
        // statements apply the rows in array order, each row is an entry in all eight of the
        // queue's indexes, and rows that follow each other there touch the same index pages
        // (a seventh to a quarter off the write; docs/performance.md, session 19). Three of
        // the indexes order by the priority, then the id.
        let by_index_order =
            |(_, row, id): &(&Pair, &QueueRow, i32)| (row.bucket, row.priority, *id);
        inserted.sort_unstable_by_key(by_index_order);
        updated.sort_unstable_by_key(by_index_order);
        let mut new = QueueColumns::default();
        for (key, row, id) in inserted {
            push_row(&mut new, key, row, id);
        }
        let mut changed = QueueColumns::default();
        for (key, row, id) in updated {
            push_row(&mut changed, key, row, id);
        }
        db::queue::insert_rows(&mut *conn, &new).await?;
        db::queue::update_rows(&mut *conn, &changed).await?;
        Ok(sequence)
    }
}

fn push_row(columns: &mut QueueColumns, key: &Pair, row: &QueueRow, id: i32) {
    let interval = row.estimated_duration.to_interval();
    columns.id.push(id);
    columns.codebase.push(key.0.clone());
    columns.campaign.push(key.1.clone());
    columns.command.push(row.command.clone());
    columns.priority.push(row.priority);
    columns.bucket.push(QUEUE_BUCKETS[row.bucket].to_string());
    columns.context.push(row.context.clone());
    columns.days.push(interval.days);
    columns.micros.push(interval.microseconds);
    columns.requester.push(row.requester.clone());
}
