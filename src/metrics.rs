//! Prometheus metrics with the Python runner's names. Counters carry the `_total` suffix the
//! Python client adds on export, so dashboards keep working.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub run_count: IntCounter,
    pub job_last_success_unixtime: Gauge,
    pub build_duration: HistogramVec,
    pub result: IntCounterVec,
    pub active_runs: GaugeVec,
    pub assignments: IntCounterVec,
    pub rate_limited_host: IntCounterVec,
    pub artifact_upload_failed: IntCounter,
    pub queue_empty: IntCounter,
    pub primary_logfile_upload_failed: IntCounter,
    pub logfile_uploads: IntCounter,
    pub postgres_insufficient_resources: IntCounter,
    pub requests: IntCounterVec,
    pub request_exceptions: IntCounterVec,
    pub request_latency_seconds: HistogramVec,
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
