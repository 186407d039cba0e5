//! The HTTP client the exporters send with, and the OTLP/HTTP exporter (the Zipkin one is in
//! [`super::zipkin`]).

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::WithHttpConfig;

use super::TelemetryError;

/// Longest one export may take; a collector that does not answer loses that batch only.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends exports with the runner's `reqwest` client on the runner's tokio runtime. The SDK's
/// batch processor exports from a thread of its own, outside the runtime, so each request is
/// spawned onto the runtime and awaited from there.
#[derive(Debug, Clone)]
pub struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    /// A client with the runner's user agent and [`EXPORT_TIMEOUT`]; must be made inside the
    /// runtime.
    pub fn new(user_agent: &str) -> Result<Self, TelemetryError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| TelemetryError::Exporter(format!("no tokio runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(EXPORT_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(Self { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

/// The OTLP/HTTP (protobuf) exporter, configured by the standard `OTEL_EXPORTER_OTLP_*`
/// environment variables.
pub fn otlp(client: ExportClient) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("OTLP: {e}")))
}
