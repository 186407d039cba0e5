//! Traces and logs, as an operator of a Janitor instance reads them: spans around every service
//! entry point and outbound call, exported to the Zipkin the Python runner reported to
//! (`zipkin_address`) or over OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`), and logs either
//! human-readable or in Google Cloud Logging's structured form (`--gcp-logging`).
//!
//! Entry points: [`Telemetry::init`] (once per process, by the binary), [`propagation`] (the
//! trace context in and out of HTTP requests), [`cloud_logging::CloudLoggingLayer`].

pub mod cloud_logging;
pub mod export;
pub mod plain;
pub mod propagation;
pub mod zipkin;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The service name spans are reported under: the Python runner's, so that traces of both
/// land in the same Zipkin service.
pub const SERVICE_NAME: &str = "janitor.runner";

/// The Python runner's sampling rate: one request in ten is traced, unless its caller's
/// trace context says otherwise.
pub const DEFAULT_SAMPLE_RATE: f64 = 0.1;

/// What to set up.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `--debug`: the runner's own debug spans and events (not every dependency's).
    pub debug: bool,
    /// `--gcp-logging`: one Cloud Logging JSON object per line on stderr.
    pub gcp_logging: bool,
    /// Where spans go over the Zipkin v2 JSON API (`zipkin_address` in the configuration, or
    /// `--zipkin-address`): the full URL, as the Python's aiozipkin takes it.
    pub zipkin_address: Option<String>,
    /// Whether spans go over OTLP/HTTP (the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set).
    pub otlp: bool,
    /// The share of new traces recorded (a caller's sampling decision is followed).
    pub sample_rate: f64,
    /// The `User-Agent` of the exporters' requests.
    pub user_agent: String,
}

impl TelemetryOptions {
    /// Plain logs at the default level, no spans exported (commands without logging flags).
    pub fn logs_only() -> Self {
        Self {
            debug: false,
            gcp_logging: false,
            zipkin_address: None,
            otlp: Self::otlp_from_env(),
            sample_rate: DEFAULT_SAMPLE_RATE,
            user_agent: crate::config::default_user_agent(),
        }
    }

    /// Whether an OTLP endpoint is set in the environment.
    pub fn otlp_from_env() -> bool {
        [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter could not be built (a bad collector URL, say).
    #[error("cannot set up the trace exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
}

/// The installed telemetry; [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's subscriber: the filter, the log format, and, when spans go
    /// somewhere (or Cloud Logging wants trace ids in its records), the OpenTelemetry layer.
    /// Without an exporter and without `--gcp-logging` there is no OpenTelemetry layer at all,
    /// so spans cost what `tracing` spans cost and no more. Must be called inside the tokio
    /// runtime the exporters will use.
    pub fn init(options: &TelemetryOptions) -> Result<Self, TelemetryError> {
        propagation::install();
        let provider = tracer_provider(options)?;
        let otel = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SERVICE_NAME))
                .with_tracked_inactivity(false)
        });
        let plain = (!options.gcp_logging).then(|| {
            tracing_subscriber::fmt::layer()
                .fmt_fields(plain::PlainFields)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        });
        let structured = options
            .gcp_logging
            .then(|| cloud_logging::CloudLoggingLayer::new(std::io::stderr));
        tracing_subscriber::registry()
            .with(filter(options.debug))
            .with(otel)
            .with(plain)
            .with(structured)
            .try_init()
            .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
        Ok(Self { provider })
    }

    /// Sends the spans still buffered and stops the exporter (bounded by the exporter's own
    /// timeout), off the async threads: the export itself runs on this runtime.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "could not send the last spans");
        }
    }
}

/// `RUST_LOG` when set; otherwise `info`, and with `--debug` the runner's own debug output.
pub fn filter(debug: bool) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(if debug {
            "info,janitor_runner=debug"
        } else {
            "info"
        })
    })
}

/// The tracer provider, when spans have somewhere to go or Cloud Logging wants their ids.
fn tracer_provider(
    options: &TelemetryOptions,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let exporting = options.zipkin_address.is_some() || options.otlp;
    if !exporting && !options.gcp_logging {
        return Ok(None);
    }
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        options.sample_rate.clamp(0.0, 1.0),
    )));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE_NAME)
                .build(),
        );
    let client = || export::ExportClient::new(&options.user_agent);
    if let Some(address) = &options.zipkin_address {
        let exporter = zipkin::ZipkinExporter::new(address, client()?, SERVICE_NAME)
            .map_err(TelemetryError::Exporter)?;
        builder = builder.with_batch_exporter(exporter);
    }
    if options.otlp {
        builder = builder.with_batch_exporter(export::otlp(client()?)?);
    }
    Ok(Some(builder.build()))
}
