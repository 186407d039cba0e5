use chrono::TimeDelta;

/// One row of the `queue` table, as the assignment reads it.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub id: i64,
    pub context: Option<String>,
    pub command: String,
    pub estimated_duration: Option<TimeDelta>,
    pub campaign: String,
    pub refresh: bool,
    pub requester: Option<String>,
    pub change_set: Option<String>,
    pub codebase: String,
}

impl PartialEq for QueueItem {
    /// Queue items are the same item when their ids are.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
