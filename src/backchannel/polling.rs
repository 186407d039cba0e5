//! The HTTP polling backchannel: the worker's diagnostics port at `my_url`, serving
//! `/log-id`, `/logs`, `/logs/{name}` and (for workers that have it) `/kill`.

use reqwest::header::ACCEPT;

use super::{BackchannelClient, BackchannelError, LogStream, Pong, status_failure};

/// `GET <my_url>/log-id`: the run the worker is working on must be `expected`.
///
/// The body is the run id as raw text (the Python worker) or as a JSON string literal (the
/// Rust `janitor-worker`, which also answers `null` when it has no run, or not yet). Not
/// reachable, an error status, or no answer within the keep-alive timeout: `Timeout`, as in
/// Python; another run id: `Fatal`; `null`: `Failure`.
pub(super) async fn ping(
    client: &BackchannelClient,
    my_url: &str,
    expected: &str,
) -> Result<Pong, BackchannelError> {
    let response = client.ping_request(my_url, &["log-id"]).await?;
    let status = response.status();
    if super::is_error_status(status) {
        return Err(BackchannelError::Timeout(super::ping_failed(
            my_url,
            &status.to_string(),
        )));
    }
    let body = super::read_limited(response, super::MAX_LOG_ID_ANSWER)
        .await
        .map_err(|e| e.into_backchannel(|detail| super::ping_failed(my_url, &detail)))?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        BackchannelError::Failure(format!(
            "worker at {my_url} answered /log-id with bytes that are not UTF-8"
        ))
    })?;
    match reported_run(text) {
        Some(id) if id == expected => Ok(Pong::Alive),
        Some(id) => Err(BackchannelError::Fatal(format!(
            "Worker started processing new run {id} rather than {expected}"
        ))),
        // `janitor-worker` answers null between taking an assignment and starting on it, so
        // this is no proof that the run is gone: no keep-alive, and the run's time runs on.
        None => Err(BackchannelError::Failure(format!(
            "Worker reports no current run rather than {expected}"
        ))),
    }
}

/// The run id in a `/log-id` answer; `None` when the worker says it has none.
fn reported_run(body: &str) -> Option<String> {
    let text = body.trim();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::String(id)) => Some(id),
        Ok(serde_json::Value::Null) => None,
        _ => Some(text.to_string()),
    }
}

/// `GET <my_url>/logs` as JSON: the names of the worker's log files.
pub(super) async fn list_log_files(
    client: &BackchannelClient,
    my_url: &str,
) -> Result<Vec<String>, BackchannelError> {
    let url = BackchannelClient::url(my_url, &["logs"])?;
    let response = client
        .send(
            client
                .http
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .timeout(client.request_timeout),
        )
        .await
        .map_err(|e| unreachable(my_url, e))?;
    if super::is_error_status(response.status()) {
        return Err(status_failure("GET", &url, response).await);
    }
    let body = super::read_limited(response, super::MAX_JSON_ANSWER)
        .await
        .map_err(|e| {
            unreachable(
                my_url,
                e.into_backchannel(|detail| format!("listing logs: {detail}")),
            )
        })?;
    serde_json::from_slice::<Vec<String>>(&body).map_err(|_| {
        BackchannelError::Failure(format!(
            "worker at {my_url} did not list its logs as a JSON list of names"
        ))
    })
}

/// `GET <my_url>/logs/<name>`, streamed. The worker's 404 means there is no such log.
pub(super) async fn get_log_file(
    client: &BackchannelClient,
    my_url: &str,
    name: &str,
) -> Result<LogStream, BackchannelError> {
    let url = match super::child_url(my_url, &["logs", name]) {
        Ok(url) => url,
        Err(super::UrlError::InvalidSegment(_)) => {
            return Err(BackchannelError::NoSuchLogFile(name.to_string()));
        }
        Err(other) => return Err(BackchannelError::Failure(other.to_string())),
    };
    let response = client
        .send(client.http.get(url.clone()))
        .await
        .map_err(|e| unreachable(my_url, e))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(BackchannelError::NoSuchLogFile(name.to_string()));
    }
    if super::is_error_status(response.status()) {
        return Err(status_failure("GET", &url, response).await);
    }
    Ok(client.stream_body(response))
}

/// `POST <my_url>/kill`. The Rust worker has no such route: its 404 is a failure.
pub(super) async fn kill(client: &BackchannelClient, my_url: &str) -> Result<(), BackchannelError> {
    let url = BackchannelClient::url(my_url, &["kill"])?;
    let response = client
        .send(
            client
                .http
                .post(url.clone())
                .header(ACCEPT, "application/json")
                .timeout(client.request_timeout),
        )
        .await
        .map_err(|e| unreachable(my_url, e))?;
    if super::is_error_status(response.status()) {
        return Err(status_failure("POST", &url, response).await);
    }
    Ok(())
}

fn unreachable(my_url: &str, error: BackchannelError) -> BackchannelError {
    match error {
        BackchannelError::Timeout(detail) => {
            BackchannelError::Timeout(format!("cannot reach worker at {my_url}: {detail}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::reported_run;

    #[test]
    fn log_id_raw_or_json() {
        assert_eq!(reported_run("abc-1").as_deref(), Some("abc-1"));
        assert_eq!(reported_run("\"abc-1\"").as_deref(), Some("abc-1"));
        assert_eq!(reported_run("\"abc-1\"\n").as_deref(), Some("abc-1"));
        assert_eq!(reported_run("null"), None);
        assert_eq!(reported_run("\"broken").as_deref(), Some("\"broken"));
        assert_eq!(reported_run("42").as_deref(), Some("42"));
    }
}
