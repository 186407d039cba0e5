//! What the internal app's `/log` and `/kill` routes do: find the active run, then ask its
//! worker through the run's backchannel.

use serde_json::Value;

use super::LogStream;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::models::ActiveRun;

async fn active_run(state: &AppState, run_id: &str) -> Result<ActiveRun> {
    crate::registry::get_run(state, run_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No such current run: {run_id}")))
}

/// `GET /log/{run_id}`: the names of the run's log files, as its worker lists them.
pub async fn list_run_logs(state: &AppState, run_id: &str) -> Result<Vec<String>> {
    let run = active_run(state, run_id).await?;
    Ok(state.backchannels.list_log_files(&run.backchannel).await?)
}

/// `GET /log/{run_id}/{filename}`: one log file of the run, streamed from its worker. The
/// name must be a plain file name (checked before the run is looked up, as in Python).
pub async fn open_run_log(state: &AppState, run_id: &str, filename: &str) -> Result<LogStream> {
    crate::finish::check_upload_filename(filename)?;
    let run = active_run(state, run_id).await?;
    Ok(state
        .backchannels
        .get_log_file(&run.backchannel, filename)
        .await?)
}

/// `POST /kill/{run_id}`: asks the worker to stop, and answers the ActiveRun JSON as it was
/// before. The run stays active until its worker uploads a result (or the watchdog reaps it).
pub async fn kill_run(state: &AppState, run_id: &str) -> Result<Value> {
    let run = active_run(state, run_id).await?;
    let before = run.to_json(state.clock.now());
    state.backchannels.kill(&run.backchannel).await?;
    tracing::info!(%run_id, worker = ?run.worker_name, "asked the worker to kill the run");
    Ok(before)
}
