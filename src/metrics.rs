//! Prometheus metrics with the Python runner's names. Counters carry the `_total` suffix the
//! Python client adds on export, so dashboards keep working.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// `requests_connection_reset_total`: requests whose connection broke while they were
    /// being read, by method and route.
    pub requests_connection_reset: IntCounterVec,
    /// `requests_cancelled_total`: requests whose client went away before the answer was
    /// ready, by method and route.
    pub requests_cancelled: IntCounterVec,
    /// `assignment_duration_seconds`: time to answer an assignment request, by outcome
    /// (`assigned`, `queue-empty`, `error`). Not in Python.
    pub assignment_duration: HistogramVec,
    /// `finish_duration_seconds`: time to take a worker's finish upload, by outcome
    /// (`stored`, `conflict`, `rejected`, `error`). Not in Python.
    pub finish_duration: HistogramVec,
    /// `upstream_probe_duration_seconds`: time to open an upstream branch during assignment,
    /// by forge (`github`, `gitlab`, `launchpad`, `other`) and outcome (`opened`,
    /// `rate-limited`, `unavailable`). Not in Python.
    pub upstream_probe_duration: HistogramVec,
    /// Active runs whose last ping by this process's watchdog failed (not in Python).
    pub active_runs_ping_failed: IntGauge,
    /// Runs this process's watchdog aborted, by result code (not in Python; the aborts are
    /// also in `result_total` like every finished run).
    pub watchdog_aborts: IntCounterVec,
    /// Watchdog aborts that found the run already stored, by its worker or another process.
    pub watchdog_abort_conflicts: IntCounter,
    /// `queue_size`: queued items by bucket, read when `/metrics` is scraped. Not in Python.
    pub queue_size: IntGaugeVec,
    /// `active_runs_keepalive_age_max_seconds`: the longest any active run has gone without
    /// a keep-alive (or, never kept alive, since it started), read when `/metrics` is
    /// scraped. Not in Python.
    pub active_runs_keepalive_age_max: Gauge,
    exported: std::sync::Arc<[String]>,
}

/// A registry that also remembers the sample names each metric is exported under.
struct Registrar {
    registry: Registry,
    names: std::cell::RefCell<Vec<String>>,
}

/// Registers a new metric and returns a handle to it.
fn registered<M>(registry: &Registrar, metric: prometheus::Result<M>) -> prometheus::Result<M>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric?;
    registry.registry.register(Box::new(metric.clone()))?;
    let mut names = registry.names.borrow_mut();
    for family in metric.collect() {
        let name = family.name();
        if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
            names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        } else {
            names.push(name.to_string());
        }
    }
    Ok(metric)
}

fn counter(registry: &Registrar, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    registered(registry, IntCounter::new(name, help))
}

fn counter_vec(
    registry: &Registrar,
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
        let r = Registrar {
            registry: Registry::new(),
            names: std::cell::RefCell::default(),
        };
        let requests = request_metrics(&r)?;
        let (assignment_duration, finish_duration, upstream_probe_duration) = latency_metrics(&r)?;
        let (active_runs_ping_failed, watchdog_aborts, watchdog_abort_conflicts) =
            watchdog_metrics(&r)?;
        let (artifact_upload_failed, primary_logfile_upload_failed, logfile_uploads) =
            storage_metrics(&r)?;
        let (queue_size, active_runs_keepalive_age_max) = scraped_metrics(&r)?;
        let (job_last_success_unixtime, build_duration, result) = result_metrics(&r)?;
        Ok(Self {
            run_count: counter(&r, "run_count_total", "Number of runs executed.")?,
            job_last_success_unixtime,
            build_duration,
            result,
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
            queue_empty: counter(
                &r,
                "queue_empty_total",
                "Number of times the queue was empty when an assignment was requested",
            )?,
            postgres_insufficient_resources: counter(
                &r,
                "postgres_insufficient_resources_total",
                "Database refused query due to resource issues",
            )?,
            requests: requests.requests,
            request_exceptions: requests.exceptions,
            request_latency_seconds: requests.latency,
            requests_in_progress: requests.in_progress,
            requests_connection_reset: requests.connection_reset,
            requests_cancelled: requests.cancelled,
            assignment_duration,
            finish_duration,
            upstream_probe_duration,
            active_runs_ping_failed,
            watchdog_aborts,
            watchdog_abort_conflicts,
            artifact_upload_failed,
            primary_logfile_upload_failed,
            logfile_uploads,
            queue_size,
            active_runs_keepalive_age_max,
            registry: r.registry,
            exported: r.names.into_inner().into(),
        })
    }

    /// The name of every sample the runner exports (a histogram's `_bucket`, `_sum` and
    /// `_count`), whether or not it has been observed yet: what dashboards may query.
    pub fn exported_names(&self) -> &[String] {
        &self.exported
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

/// The request metrics of the web middleware (aiohttp-openmetrics' names and help texts).
struct RequestMetrics {
    requests: IntCounterVec,
    exceptions: IntCounterVec,
    latency: HistogramVec,
    in_progress: GaugeVec,
    connection_reset: IntCounterVec,
    cancelled: IntCounterVec,
}

fn request_metrics(r: &Registrar) -> prometheus::Result<RequestMetrics> {
    Ok(RequestMetrics {
        requests: counter_vec(
            r,
            "requests_total",
            "Total Request Count",
            &["method", "route", "status"],
        )?,
        connection_reset: counter_vec(
            r,
            "requests_connection_reset_total",
            "Total Number of Requests where the connection was reset",
            &["method", "route"],
        )?,
        cancelled: counter_vec(
            r,
            "requests_cancelled_total",
            "Total Number of Requests that were cancelled",
            &["method", "route"],
        )?,
        latency: registered(
            r,
            HistogramVec::new(
                HistogramOpts::new("request_latency_seconds", "Request latency"),
                &["route"],
            ),
        )?,
        in_progress: registered(
            r,
            GaugeVec::new(
                Opts::new(
                    "requests_in_progress_total",
                    "Requests currently in progress",
                ),
                &["method", "route"],
            ),
        )?,
        exceptions: counter_vec(
            r,
            "request_exceptions_total",
            "Total Number of Exceptions during Requests",
            &["method", "route"],
        )?,
    })
}

/// Buckets for the service latencies: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram(
    r: &Registrar,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    registered(
        r,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        ),
    )
}

/// Where assignment and finishing spend their time.
fn latency_metrics(
    r: &Registrar,
) -> prometheus::Result<(HistogramVec, HistogramVec, HistogramVec)> {
    Ok((
        latency_histogram(
            r,
            "assignment_duration_seconds",
            "Time to answer an assignment request, by outcome",
            &["outcome"],
        )?,
        latency_histogram(
            r,
            "finish_duration_seconds",
            "Time to take a finish upload, by outcome",
            &["outcome"],
        )?,
        latency_histogram(
            r,
            "upstream_probe_duration_seconds",
            "Time to open an upstream branch during assignment, by forge and outcome",
            &["forge", "outcome"],
        )?,
    ))
}

/// What finishing runs reports: when one was last stored, build durations, result counts.
fn result_metrics(r: &Registrar) -> prometheus::Result<(Gauge, HistogramVec, IntCounterVec)> {
    Ok((
        registered(
            r,
            Gauge::new(
                "job_last_success_unixtime",
                "Last time a batch job successfully finished",
            ),
        )?,
        registered(
            r,
            HistogramVec::new(
                HistogramOpts::new("build_duration", "Build duration"),
                &["campaign"],
            ),
        )?,
        counter_vec(
            r,
            "result_total",
            "Result counts",
            &["campaign", "result_code"],
        )?,
    ))
}

/// Storage failures and log uploads (the Python's `logs` and `artifacts` modules' metrics).
fn storage_metrics(r: &Registrar) -> prometheus::Result<(IntCounter, IntCounter, IntCounter)> {
    Ok((
        counter(
            r,
            "artifact_upload_failed_total",
            "Number of failed artifact uploads",
        )?,
        counter(
            r,
            "primary_logfile_upload_failed_total",
            "Number of failed logs to primary logfile target",
        )?,
        counter(r, "logfile_uploads_total", "Number of uploaded log files")?,
    ))
}

/// The gauges read when `/metrics` is scraped: queue size by bucket, oldest keep-alive.
fn scraped_metrics(r: &Registrar) -> prometheus::Result<(IntGaugeVec, Gauge)> {
    Ok((
        registered(
            r,
            IntGaugeVec::new(
                Opts::new("queue_size", "Number of queued items, by bucket"),
                &["bucket"],
            ),
        )?,
        registered(
            r,
            Gauge::new(
                "active_runs_keepalive_age_max_seconds",
                "Longest time any active run has gone without a keep-alive",
            ),
        )?,
    ))
}

/// The watchdog's metrics: failed pings, aborts by result code, aborts that found the run
/// already stored.
fn watchdog_metrics(r: &Registrar) -> prometheus::Result<(IntGauge, IntCounterVec, IntCounter)> {
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
