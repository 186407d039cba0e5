//! The Jenkins backchannel: the run is a Jenkins build at `my_url`. Its state comes from
//! `<my_url>/api/json`; its one log is the console (`worker.log`).

use serde_json::Value;

use super::{BackchannelClient, BackchannelError, LogStream, Pong, status_failure};

/// The only log a Jenkins build has: its console output.
pub(super) const LOG_NAME: &str = "worker.log";

/// `GET <my_url>/api/json`. A 404 means the build is gone and a `FAILURE` result that it
/// failed: both fatal. A running build (`result: null`) is alive; a build that ended any other
/// way gives no verdict on the run.
pub(super) async fn ping(
    client: &BackchannelClient,
    my_url: &str,
    expected: &str,
) -> Result<Pong, BackchannelError> {
    let failed = |detail: String| super::ping_failed(my_url, &detail);
    let response = client.ping_request(my_url, &["api", "json"]).await?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(BackchannelError::Fatal(format!(
            "Jenkins job {my_url} has disappeared"
        )));
    }
    if super::is_error_status(status) {
        return Err(BackchannelError::Failure(failed(status.to_string())));
    }
    let body = super::read_limited(response, super::MAX_JSON_ANSWER)
        .await
        .map_err(|e| e.into_backchannel(failed))?;
    let job: Value = serde_json::from_slice(&body)
        .map_err(|_| BackchannelError::Failure(failed("the answer is not JSON".to_string())))?;
    match job.get("result") {
        Some(Value::String(result)) if result == "FAILURE" => {
            let id = match job.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Number(id)) => id.to_string(),
                _ => my_url.to_string(),
            };
            Err(BackchannelError::Fatal(format!(
                "Jenkins lists job {id} for run {expected} as failed"
            )))
        }
        Some(Value::String(result)) => Ok(Pong::BuildEnded(result.clone())),
        _ => Ok(Pong::Alive),
    }
}

/// The console text, `<my_url>/logText/progressiveText`, streamed.
pub(super) async fn get_log_file(
    client: &BackchannelClient,
    my_url: &str,
    name: &str,
) -> Result<LogStream, BackchannelError> {
    if name != LOG_NAME {
        return Err(BackchannelError::NoSuchLogFile(name.to_string()));
    }
    let url = BackchannelClient::url(my_url, &["logText", "progressiveText"])?;
    let response = client.send(client.http.get(url.clone())).await?;
    if super::is_error_status(response.status()) {
        return Err(status_failure("GET", &url, response).await);
    }
    Ok(client.stream_body(response))
}
