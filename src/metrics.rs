//! Prometheus metrics with the Python runner's names. Counters carry the `_total` suffix the
//! Python client adds on export, so dashboards keep working.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// The runner's Prometheus metrics, each a handle into `registry`.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Holds every metric below; what `/metrics` renders.
    pub registry: Registry,
    /// `run_count_total`: runs registered as active.
    pub run_count: IntCounter,
    /// `job_last_success_unixtime`: when a run was last finished and announced.
    pub job_last_success_unixtime: Gauge,
    /// `build_duration`: seconds from start to finish of each stored run, by campaign.
    pub build_duration: HistogramVec,
    /// `result_total`: stored results, by campaign and result code.
    pub result: IntCounterVec,
    /// `active_runs`: runs out with workers, by worker.
    pub active_runs: GaugeVec,
    /// `assignments_total`: assign requests, by worker.
    pub assignments: IntCounterVec,
    /// `rate_limited_host_total`: times a host was blocked for answering 429, by host.
    pub rate_limited_host: IntCounterVec,
    /// `artifact_upload_failed_total`: finished runs whose artifacts could not be stored.
    pub artifact_upload_failed: IntCounter,
    /// `queue_empty_total`: assign requests that found nothing to hand out.
    pub queue_empty: IntCounter,
    /// `primary_logfile_upload_failed_total`: logs that went to the backup directory or nowhere.
    pub primary_logfile_upload_failed: IntCounter,
    /// `logfile_uploads_total`: logs stored in the primary log storage.
    pub logfile_uploads: IntCounter,
    /// `postgres_insufficient_resources_total`: requests that failed as PostgreSQL was out of
    /// resources.
    pub postgres_insufficient_resources: IntCounter,
    /// `requests_total`: HTTP requests, by method, route and status.
    pub requests: IntCounterVec,
    /// `request_exceptions_total`: HTTP requests answered 500, by method and route.
    pub request_exceptions: IntCounterVec,
    /// `request_latency_seconds`: how long HTTP requests took, by route.
    pub request_latency_seconds: HistogramVec,
    /// `requests_in_progress_total`: HTTP requests being answered, by method and route.
    pub requests_in_progress: GaugeVec,
    /// Active runs whose last ping by this process's watchdog failed (not in Python).
    pub active_runs_ping_failed: IntGauge,
    /// Runs this process's watchdog aborted, by result code (not in Python; the aborts are
    /// also in `result_total` like every finished run).
    pub watchdog_aborts: IntCounterVec,
    /// Watchdog aborts that found the run already stored, by its worker or another process.
    pub watchdog_abort_conflicts: IntCounter,
}

/// Registers a new metric and returns a handle to it.
fn registered<M>(registry: &Registry, metric: prometheus::Result<M>) -> prometheus::Result<M>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    registered(registry, IntCounter::new(name, help))
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

impl Metrics {
    /// Every metric, registered in a registry of its own (several apps in one process, as in
    /// the tests and the Python face, each count their own).
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let (requests, request_exceptions, request_latency_seconds, requests_in_progress) =
            request_metrics(&r)?;
        let (active_runs_ping_failed, watchdog_aborts, watchdog_abort_conflicts) =
            watchdog_metrics(&r)?;
        Ok(Self {
            run_count: counter(&r, "run_count_total", "Number of runs handled.")?,
            job_last_success_unixtime: registered(
                &r,
                Gauge::new(
                    "job_last_success_unixtime",
                    "Last time a batch job successfully finished",
                ),
            )?,
            build_duration: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("build_duration", "Build duration"),
                    &["campaign"],
                ),
            )?,
            result: counter_vec(
                &r,
                "result_total",
                "Result counts",
                &["campaign", "result_code"],
            )?,
            active_runs: registered(
                &r,
                GaugeVec::new(
                    Opts::new("active_runs", "Number of active runs"),
                    &["worker"],
                ),
            )?,
            assignments: counter_vec(
                &r,
                "assignments_total",
                "Number of assignments handed out",
                &["worker"],
            )?,
            rate_limited_host: counter_vec(
                &r,
                "rate_limited_host_total",
                "Rate limiting per host",
                &["host"],
            )?,
            artifact_upload_failed: counter(
                &r,
                "artifact_upload_failed_total",
                "Number of failures uploading artifacts",
            )?,
            queue_empty: counter(&r, "queue_empty_total", "Queue was empty.")?,
            primary_logfile_upload_failed: counter(
                &r,
                "primary_logfile_upload_failed_total",
                "Number of failed logs to primary logfile target",
            )?,
            logfile_uploads: counter(&r, "logfile_uploads_total", "Number of uploaded log files")?,
            postgres_insufficient_resources: counter(
                &r,
                "postgres_insufficient_resources_total",
                "Number of requests that failed because PostgreSQL was out of resources",
            )?,
            requests,
            request_exceptions,
            request_latency_seconds,
            requests_in_progress,
            active_runs_ping_failed,
            watchdog_aborts,
            watchdog_abort_conflicts,
            registry: r,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Python's `str(None)` for missing label values.
    pub fn label(value: Option<&str>) -> &str {
        value.unwrap_or("None")
    }
}

/// The request metrics of the web middleware: count, exceptions, latency, in progress.
fn request_metrics(
    r: &Registry,
) -> prometheus::Result<(IntCounterVec, IntCounterVec, HistogramVec, GaugeVec)> {
    let requests = counter_vec(
        r,
        "requests_total",
        "Total request count",
        &["method", "route", "status"],
    )?;
    let request_exceptions = counter_vec(
        r,
        "request_exceptions_total",
        "Total request exceptions",
        &["method", "route"],
    )?;
    let request_latency_seconds = registered(
        r,
        HistogramVec::new(
            HistogramOpts::new("request_latency_seconds", "Request latency"),
            &["route"],
        ),
    )?;
    let requests_in_progress = registered(
        r,
        GaugeVec::new(
            Opts::new("requests_in_progress_total", "Requests in progress"),
            &["method", "route"],
        ),
    )?;
    Ok((
        requests,
        request_exceptions,
        request_latency_seconds,
        requests_in_progress,
    ))
}

/// The watchdog's metrics: failed pings, aborts by result code, aborts that found the run
/// already stored.
fn watchdog_metrics(r: &Registry) -> prometheus::Result<(IntGauge, IntCounterVec, IntCounter)> {
    let active_runs_ping_failed = registered(
        r,
        IntGauge::new(
            "active_runs_ping_failed",
            "Active runs whose last ping failed",
        ),
    )?;
    let watchdog_aborts = counter_vec(
        r,
        "watchdog_aborts_total",
        "Runs aborted by the watchdog",
        &["result_code"],
    )?;
    let watchdog_abort_conflicts = counter(
        r,
        "watchdog_abort_conflicts_total",
        "Watchdog aborts of runs that were already stored",
    )?;
    Ok((
        active_runs_ping_failed,
        watchdog_aborts,
        watchdog_abort_conflicts,
    ))
}
