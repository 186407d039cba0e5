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

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let metric = IntCounter::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let run_count = counter(&registry, "run_count_total", "Number of runs handled.")?;
        let job_last_success_unixtime = Gauge::new(
            "job_last_success_unixtime",
            "Last time a batch job successfully finished",
        )?;
        registry.register(Box::new(job_last_success_unixtime.clone()))?;
        let build_duration = HistogramVec::new(
            HistogramOpts::new("build_duration", "Build duration"),
            &["campaign"],
        )?;
        registry.register(Box::new(build_duration.clone()))?;
        let result = counter_vec(
            &registry,
            "result_total",
            "Result counts",
            &["campaign", "result_code"],
        )?;
        let active_runs = GaugeVec::new(
            Opts::new("active_runs", "Number of active runs"),
            &["worker"],
        )?;
        registry.register(Box::new(active_runs.clone()))?;
        let assignments = counter_vec(
            &registry,
            "assignments_total",
            "Number of assignments handed out",
            &["worker"],
        )?;
        let rate_limited_host = counter_vec(
            &registry,
            "rate_limited_host_total",
            "Rate limiting per host",
            &["host"],
        )?;
        let artifact_upload_failed = counter(
            &registry,
            "artifact_upload_failed_total",
            "Number of failures uploading artifacts",
        )?;
        let queue_empty = counter(&registry, "queue_empty_total", "Queue was empty.")?;
        let primary_logfile_upload_failed = counter(
            &registry,
            "primary_logfile_upload_failed_total",
            "Number of failed logs to primary logfile target",
        )?;
        let logfile_uploads = counter(
            &registry,
            "logfile_uploads_total",
            "Number of uploaded log files",
        )?;
        let postgres_insufficient_resources = counter(
            &registry,
            "postgres_insufficient_resources_total",
            "Number of requests that failed because PostgreSQL was out of resources",
        )?;
        let requests = counter_vec(
            &registry,
            "requests_total",
            "Total request count",
            &["method", "route", "status"],
        )?;
        let request_exceptions = counter_vec(
            &registry,
            "request_exceptions_total",
            "Total request exceptions",
            &["method", "route"],
        )?;
        let request_latency_seconds = HistogramVec::new(
            HistogramOpts::new("request_latency_seconds", "Request latency"),
            &["route"],
        )?;
        registry.register(Box::new(request_latency_seconds.clone()))?;
        let requests_in_progress = GaugeVec::new(
            Opts::new("requests_in_progress_total", "Requests in progress"),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests_in_progress.clone()))?;
        let active_runs_ping_failed = IntGauge::new(
            "active_runs_ping_failed",
            "Active runs whose last ping failed",
        )?;
        registry.register(Box::new(active_runs_ping_failed.clone()))?;
        let watchdog_aborts = counter_vec(
            &registry,
            "watchdog_aborts_total",
            "Runs aborted by the watchdog",
            &["result_code"],
        )?;
        let watchdog_abort_conflicts = counter(
            &registry,
            "watchdog_abort_conflicts_total",
            "Watchdog aborts of runs that were already stored",
        )?;
        Ok(Self {
            registry,
            run_count,
            job_last_success_unixtime,
            build_duration,
            result,
            active_runs,
            assignments,
            rate_limited_host,
            artifact_upload_failed,
            queue_empty,
            primary_logfile_upload_failed,
            logfile_uploads,
            postgres_insufficient_resources,
            requests,
            request_exceptions,
            request_latency_seconds,
            requests_in_progress,
            active_runs_ping_failed,
            watchdog_aborts,
            watchdog_abort_conflicts,
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
