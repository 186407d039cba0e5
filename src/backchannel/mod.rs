//! Backchannels: how the runner reaches a worker while its run is out. Three kinds, as the
//! assign request names them and the ActiveRun JSON keeps them (`models::BackchannelInfo`):
//! none, HTTP polling of the worker's diagnostics port (`my_url`), and a Jenkins build.
//!
//! Each can be pinged with the run id it should be working on, list and stream its log files,
//! and be killed. One `BackchannelClient` (one connection pool, bounded timeouts) does it for
//! every run; the watchdog pings through it and the `/log` and `/kill` routes use it.
//!
//! Entry points: `BackchannelClient::{ping, list_log_files, get_log_file, kill}`, and for the
//! routes `list_run_logs`, `open_run_log` and `kill_run`.

mod jenkins;

mod polling;
mod runs;
mod url;
pub mod watchdog;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::models::BackchannelInfo;

pub use self::runs::{kill_run, list_run_logs, open_run_log};
pub use self::url::{UrlError, child_url};

/// Longest a ping may take, connection to body (the Python's `KEEPALIVE_TIMEOUT`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a TCP (and TLS) connection to a worker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a log listing or a kill may take; for a log download, the longest wait for its
/// headers and then between two chunks (a long log may take longer as a whole).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a backchannel call did not succeed: the Python's ping taxonomy (`PingTimeout`,
/// `PingFailure`, `PingFatalFailure`, `NotImplementedError`) plus a missing log file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackchannelError {
    /// The run's backchannel cannot do this (a run without backchannel; kill on Jenkins).
    #[error("{0} not supported for this type of run")]
    NotImplemented(&'static str),
    /// The worker could not be reached or did not answer in time; worth trying again.
    #[error("{0}")]
    Timeout(String),
    /// The worker answered with an error, or with something that makes no sense; it may pass.
    #[error("{0}")]
    Failure(String),
    /// The worker is not working on this run any more; trying again will not help.
    #[error("{0}")]
    Fatal(String),
    /// The worker has no log file of this name.
    #[error("No such log file: {0}")]
    NoSuchLogFile(String),
}

/// A ping that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pong {
    /// The worker is working on the run: a keep-alive.
    Alive,
    /// The Jenkins build is over, with this result (not `FAILURE`), and the run was not
    /// uploaded. This says nothing about the run, so it is not a keep-alive (DECISIONS.md 12).
    BuildEnded(String),
}

/// A log file as its worker sends it, chunk by chunk.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, BackchannelError>> + Send>>;

/// Talks to workers: one connection pool for every run, with a connect timeout on every
/// call and a total or idle timeout on each request.
#[derive(Debug, Clone)]
pub struct BackchannelClient {
    http: reqwest::Client,
    keepalive_timeout: Duration,
    request_timeout: Duration,
}

impl BackchannelClient {
    /// A client with the Python's timeouts (pings 60 s).
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::with_timeouts(
            CONNECT_TIMEOUT,
            KEEPALIVE_TIMEOUT,
            REQUEST_TIMEOUT,
            &crate::config::default_user_agent(),
        )
    }

    /// A client with other timeouts: `connect` for connections, `keepalive` for pings,
    /// `request` for the other calls, sending `user_agent`.
    pub fn with_timeouts(
        connect: Duration,
        keepalive: Duration,
        request: Duration,
        user_agent: &str,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self {
            http,
            keepalive_timeout: keepalive,
            request_timeout: request,
        })
    }

    /// Asks the worker whether it is still working on run `expected_run_id`.
    #[tracing::instrument(name = "backchannel.ping", skip_all, fields(run_id = expected_run_id))]
    pub async fn ping(
        &self,
        channel: &BackchannelInfo,
        expected_run_id: &str,
    ) -> Result<Pong, BackchannelError> {
        match channel {
            BackchannelInfo::None => Err(BackchannelError::NotImplemented("ping")),
            BackchannelInfo::Polling { my_url } => {
                polling::ping(self, my_url, expected_run_id).await
            }
            BackchannelInfo::Jenkins { my_url, .. } => {
                jenkins::ping(self, my_url, expected_run_id).await
            }
        }
    }

    /// The names of the log files the worker has so far.
    pub async fn list_log_files(
        &self,
        channel: &BackchannelInfo,
    ) -> Result<Vec<String>, BackchannelError> {
        match channel {
            BackchannelInfo::None => Err(BackchannelError::NotImplemented("listing logs")),
            BackchannelInfo::Polling { my_url } => polling::list_log_files(self, my_url).await,
            BackchannelInfo::Jenkins { .. } => Ok(vec![jenkins::LOG_NAME.to_string()]),
        }
    }

    /// One log file, streamed as the worker sends it (never buffered whole).
    pub async fn get_log_file(
        &self,
        channel: &BackchannelInfo,
        name: &str,
    ) -> Result<LogStream, BackchannelError> {
        match channel {
            BackchannelInfo::None => Err(BackchannelError::NotImplemented("fetching logs")),
            BackchannelInfo::Polling { my_url } => polling::get_log_file(self, my_url, name).await,
            BackchannelInfo::Jenkins { my_url, .. } => {
                jenkins::get_log_file(self, my_url, name).await
            }
        }
    }

    /// Asks the worker to stop the run. The run stays active: the worker uploads a result.
    pub async fn kill(&self, channel: &BackchannelInfo) -> Result<(), BackchannelError> {
        match channel {
            BackchannelInfo::Polling { my_url } => polling::kill(self, my_url).await,
            BackchannelInfo::None | BackchannelInfo::Jenkins { .. } => {
                Err(BackchannelError::NotImplemented("kill"))
            }
        }
    }

    /// `base` + `segments`; a stored URL that is not usable is a failure of this worker.
    fn url(base: &str, segments: &[&str]) -> Result<reqwest::Url, BackchannelError> {
        child_url(base, segments).map_err(|e| BackchannelError::Failure(e.to_string()))
    }

    /// The GET of a ping, `my_url` + `segments`, bounded by the keep-alive timeout as a
    /// whole. A worker that cannot be reached or does not answer in time is `Timeout`, with
    /// the Python's "Failed to ping client" reason.
    async fn ping_request(
        &self,
        my_url: &str,
        segments: &[&str],
    ) -> Result<reqwest::Response, BackchannelError> {
        let url = Self::url(my_url, segments)?;
        crate::telemetry::propagation::traced(self.http.get(url))
            .timeout(self.keepalive_timeout)
            .send()
            .await
            .map_err(|e| BackchannelError::Timeout(ping_failed(my_url, &describe(&e))))
    }

    /// Starts a GET (or POST) and waits for the headers at most `request_timeout`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackchannelError> {
        let request = crate::telemetry::propagation::traced(request);
        match tokio::time::timeout(self.request_timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(BackchannelError::Timeout(describe(&error))),
            Err(_) => Err(BackchannelError::Timeout(format!(
                "no answer within {} s",
                self.request_timeout.as_secs()
            ))),
        }
    }

    /// The body as a stream; waiting more than `request_timeout` for a chunk ends it with an
    /// error.
    fn stream_body(&self, response: reqwest::Response) -> LogStream {
        let idle = self.request_timeout;
        Box::pin(futures::stream::try_unfold(
            response,
            move |mut response| async move {
                match tokio::time::timeout(idle, response.chunk()).await {
                    Ok(Ok(Some(chunk))) => Ok(Some((chunk, response))),
                    Ok(Ok(None)) => Ok(None),
                    Ok(Err(error)) => Err(BackchannelError::Timeout(describe(&error))),
                    Err(_) => Err(BackchannelError::Timeout(format!(
                        "the worker sent nothing for {} s",
                        idle.as_secs()
                    ))),
                }
            },
        ))
    }
}

/// Largest `/log-id` answer read (a run id is 36 bytes).
const MAX_LOG_ID_ANSWER: usize = 64 * 1024;
/// Largest log listing or Jenkins job description read.
const MAX_JSON_ANSWER: usize = 4 * 1024 * 1024;

/// Why a bounded read of an answer stopped.
enum ReadError {
    Transport(reqwest::Error),
    TooLarge(usize),
}

/// The whole body, unless it is larger than `limit` bytes: a worker cannot make the runner
/// hold more than that in memory.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

impl ReadError {
    /// A transport error as `Timeout`, an oversize answer as `Failure`, each with `context`.
    fn into_backchannel(self, context: impl FnOnce(String) -> String) -> BackchannelError {
        match self {
            Self::Transport(error) => BackchannelError::Timeout(context(describe(&error))),
            Self::TooLarge(limit) => BackchannelError::Failure(context(format!(
                "the answer is larger than {limit} bytes"
            ))),
        }
    }
}

/// The Python's reason for a ping that did not get an answer.
fn ping_failed(my_url: &str, detail: &str) -> String {
    format!("Failed to ping client {my_url}: {detail}")
}

/// A reqwest error with its causes ("error sending request: connection refused"), which its
/// own `Display` leaves out.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An error status as a failure naming the request and the start of the answer.
async fn status_failure(
    method: &str,
    url: &reqwest::Url,
    mut response: reqwest::Response,
) -> BackchannelError {
    let status = response.status();
    let body = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .map(|bytes| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            text.trim().to_string()
        })
        .unwrap_or_default();
    let mut reason = format!("worker answered {status} to {method} {url}");
    if !body.is_empty() {
        reason.push_str(": ");
        reason.push_str(&body);
    }
    BackchannelError::Failure(reason)
}

fn is_error_status(status: reqwest::StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}
