//! The runner's data models and their JSON forms, exactly as the Python runner writes them.

mod active_run;
mod backchannel;
mod builder_result;
mod janitor_result;
mod json;
mod queue_item;
mod resume_info;
mod vcs;
mod worker_result;

pub use active_run::ActiveRun;
pub use backchannel::BackchannelInfo;
pub use builder_result::{BuilderResult, DebianResult};
pub use janitor_result::{Branch, JanitorResult, ResultOf, Tag, Worked};
pub use queue_item::QueueItem;
pub use resume_info::ResumeInfo;
pub use vcs::{VCS_TYPES, VcsInfo, is_vcs_type};
pub use worker_result::WorkerResult;

/// Python truthiness of a JSON value (`null`, `false`, `0`, `""`, `[]`, `{}` are false).
pub fn is_truthy(value: &serde_json::Value) -> bool {
    json::truthy(value)
}

/// JSON that does not have the shape a model needs. The message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

impl ModelError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
