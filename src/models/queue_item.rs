use chrono::TimeDelta;

/// One row of the `queue` table, as the assignment reads it.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// Queue row id.
    pub id: i64,
    /// Opaque context of the candidate it was queued for.
    pub context: Option<String>,
    /// The command the worker runs; empty when the row has none.
    pub command: String,
    /// How long the run is expected to take; `None` when unknown.
    pub estimated_duration: Option<TimeDelta>,
    /// The campaign to run.
    pub campaign: String,
    /// Start afresh instead of resuming from an earlier run.
    pub refresh: bool,
    /// Who or what asked for the run.
    pub requester: Option<String>,
    /// The change set the run belongs to, if any.
    pub change_set: Option<String>,
    /// The codebase to run on.
    pub codebase: String,
}

impl PartialEq for QueueItem {
    /// Queue items are the same item when their ids are.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
