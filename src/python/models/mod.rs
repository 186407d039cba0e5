//! The model classes of the Python runner (`ActiveRun`, `WorkerResult`, `JanitorResult`,
//! `ResumeInfo`): the same constructors, attributes, JSON forms and equality.

mod active_run;
mod janitor_result;
mod worker_result;

pub(crate) use active_run::PyActiveRun;
pub(crate) use janitor_result::{PyJanitorResult, PyResumeInfo};
pub(crate) use worker_result::PyWorkerResult;
