//! The simulated workers, answering errors as `janitor-worker` does (see the `chaos` module),
//! and the ledger of what each was told, which the invariants are checked against.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use super::Rng;

/// What the workers were told, for the invariants and the report.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Every assignment a worker received.
    pub(super) assignments: Vec<Assignment>,
    /// Every finish answer, by run id, in order.
    pub(super) finish_answers: HashMap<String, Vec<u16>>,
    pub(super) assign_statuses: BTreeMap<String, usize>,
    pub(super) finish_statuses: BTreeMap<String, usize>,
    /// Runs whose worker gave up its finish, and why.
    pub(super) given_up: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(super) struct Assignment {
    pub(super) run_id: String,
    pub(super) queue_id: i64,
    pub(super) received: Instant,
    pub(super) released: Option<Instant>,
}

/// Requests in flight per runner, to say what each kill interrupted.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    pub(super) assign: [AtomicUsize; 2],
    pub(super) finish: [AtomicUsize; 2],
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) ledger: Arc<Mutex<Ledger>>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) stop: Arc<AtomicBool>,
    /// The run each worker reports on its backchannel (`/log-id`), as `janitor-worker` keeps
    /// reporting its last run until the next assignment.
    pub(super) current: Arc<Mutex<Vec<Option<String>>>>,
    pub(super) cycles: Arc<AtomicU64>,
}

impl Shared {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            ledger: Arc::default(),
            in_flight: Arc::default(),
            stop: Arc::default(),
            current: Arc::new(Mutex::new(vec![None; workers])),
            cycles: Arc::default(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ledger slot of the new assignment, for `release`.
    fn record_assignment(&self, run_id: String, queue_id: i64, received: Instant) -> usize {
        let mut ledger = self.ledger();
        ledger.assignments.push(Assignment {
            run_id,
            queue_id,
            received,
            released: None,
        });
        ledger.assignments.len() - 1
    }

    /// The worker is done with the assignment in `slot`; `given_up` says why it let the
    /// finish go, if it did.
    fn release(&self, slot: usize, run_id: String, given_up: Option<String>) {
        let mut ledger = self.ledger();
        ledger.assignments[slot].released = Some(Instant::now());
        if let Some(reason) = given_up {
            ledger.given_up.push((run_id, reason));
        }
    }

    fn count(&self, finish: bool, outcome: String) {
        let mut ledger = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = if finish {
            &mut ledger.finish_statuses
        } else {
            &mut ledger.assign_statuses
        };
        *map.entry(outcome).or_default() += 1;
    }
}

struct Backoff {
    next: f64,
    rng: Rng,
}

impl Backoff {
    const CAP: f64 = 2.0;

    fn new(rng: Rng) -> Self {
        Self { next: 0.5, rng }
    }

    fn wait(&mut self) -> Duration {
        let randomised = self.next * (0.5 + self.rng.unit());
        self.next = (self.next * 1.5).min(Self::CAP);
        Duration::from_secs_f64(randomised)
    }
}

const FINISH_GIVE_UP: Duration = Duration::from_secs(20);
const BOUNDARY: &str = "janitor-runner-chaos-boundary";

fn finish_body(run_id: &str, started: NaiveDateTime) -> Vec<u8> {
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let now = chrono::Utc::now().naive_utc();
    let result = serde_json::json!({
        "description": "chaos", "codemod": {}, "start_time": fmt(started),
        "finish_time": fmt(now), "target": {"name": "generic", "details": {}},
    });
    let log: String = (0..40)
        .map(|i| format!("run {run_id} line {i}\n"))
        .collect();
    let mut body = Vec::new();
    body.extend(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"result.json\"\r\n\
             Content-Type: application/json\r\n\r\n{result}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"worker.log\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{log}\r\n--{BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    body
}

fn outcome_of(result: &Result<reqwest::Response, reqwest::Error>) -> String {
    match result {
        Ok(response) => response.status().as_u16().to_string(),
        Err(error) if error.is_timeout() => "timeout".to_string(),
        Err(_) => "connection error".to_string(),
    }
}

/// One simulated worker: the runner it talks to and how it treats a finish that failed.
pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) runner_index: usize,
    pub(super) base: String,
    pub(super) backchannel: String,
    pub(super) retries_connection_errors: bool,
    pub(super) shared: Shared,
}

impl Worker {
    /// Assignment, a short pause, finish, until told to stop.
    pub(super) async fn run(self, mut rng: Rng) {
        let Ok(client) = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
        else {
            return;
        };
        let request = serde_json::json!({
            "node": format!("chaos-{}", self.index), "archs": ["amd64"],
            "backchannel": {"kind": "http", "url": self.backchannel},
        });
        while !self.shared.stop.load(Ordering::Relaxed) {
            let Some(assignment) = self.assignment(&client, &request, &mut rng).await else {
                return;
            };
            let (Some(run_id), Some(queue_id)) = (
                assignment["id"].as_str().map(str::to_string),
                assignment["queue_id"].as_i64(),
            ) else {
                self.shared.count(false, "assignment without id".into());
                continue;
            };
            let received = Instant::now();
            let started = chrono::Utc::now().naive_utc();
            let slot = self
                .shared
                .record_assignment(run_id.clone(), queue_id, received);
            self.shared
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[self.index] =
                Some(run_id.clone());
            tokio::time::sleep(Duration::from_millis(20 + rng.next() % 180)).await;
            let given_up = self.finish(&client, &run_id, started, &mut rng).await;
            self.shared.release(slot, run_id, given_up);
        }
    }

    /// Asks until given an assignment; None once told to stop.
    async fn assignment(
        &self,
        client: &reqwest::Client,
        request: &serde_json::Value,
        rng: &mut Rng,
    ) -> Option<serde_json::Value> {
        let (base, shared, runner_index) = (&self.base, &self.shared, self.runner_index);
        let mut backoff = Backoff::new(Rng::new(rng.next()));
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            shared.in_flight.assign[runner_index].fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(format!("{base}/active-runs"))
                .json(request)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            shared.in_flight.assign[runner_index].fetch_sub(1, Ordering::SeqCst);
            shared.count(false, outcome_of(&answer));
            match answer {
                Ok(response) if response.status().as_u16() == 201 => {
                    match response.json::<serde_json::Value>().await {
                        Ok(body) => return Some(body),
                        Err(_) => tokio::time::sleep(backoff.wait()).await,
                    }
                }
                Ok(response) if response.status().as_u16() == 503 => {
                    let empty = response
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .is_some_and(|body| body["reason"] == "queue empty");
                    let pause = if empty {
                        Duration::from_secs(1)
                    } else {
                        backoff.wait()
                    };
                    tokio::time::sleep(pause).await;
                }
                Ok(response) if response.status().is_server_error() => {
                    tokio::time::sleep(backoff.wait()).await;
                }
                // Other 4xx: janitor-worker gives up and, looping, asks again.
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => tokio::time::sleep(backoff.wait()).await,
            }
        }
    }

    /// Uploads the run's result and log until it is taken or given up; why it was given up,
    /// if it was.
    async fn finish(
        &self,
        client: &reqwest::Client,
        run_id: &str,
        started: NaiveDateTime,
        rng: &mut Rng,
    ) -> Option<String> {
        let (base, shared, runner_index) = (&self.base, &self.shared, self.runner_index);
        let body = finish_body(run_id, started);
        let mut backoff = Backoff::new(Rng::new(rng.next()));
        let give_up_at = Instant::now() + FINISH_GIVE_UP;
        loop {
            shared.in_flight.finish[runner_index].fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(format!("{base}/active-runs/{run_id}/finish"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body.clone())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            shared.in_flight.finish[runner_index].fetch_sub(1, Ordering::SeqCst);
            let outcome = outcome_of(&answer);
            shared.count(true, outcome.clone());
            if let Ok(response) = &answer {
                shared
                    .ledger()
                    .finish_answers
                    .entry(run_id.to_string())
                    .or_default()
                    .push(response.status().as_u16());
            }
            let status = answer.as_ref().ok().map(|r| r.status().as_u16());
            match status {
                Some(200 | 201) => {
                    shared.cycles.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Some(404) => return Some("404".to_string()),
                Some(409) if self.retries_connection_errors => return None,
                None if !self.retries_connection_errors => return Some(outcome),
                _ if Instant::now() >= give_up_at => {
                    return Some(format!("gave up after {outcome}"));
                }
                _ => tokio::time::sleep(backoff.wait()).await,
            }
        }
    }
}

/// `GET /w/<n>/log-id` for every simulated worker.
pub(super) async fn serve_backchannels(
    current: Arc<Mutex<Vec<Option<String>>>>,
) -> anyhow::Result<u16> {
    use axum::extract::{Path as UrlPath, State};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route(
            "/w/{n}/log-id",
            axum::routing::get(
                |State(current): State<Arc<Mutex<Vec<Option<String>>>>>,
                 UrlPath(n): UrlPath<usize>| async move {
                    let current = current
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    axum::Json(current.get(n).cloned().flatten())
                },
            ),
        )
        .with_state(current);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}
