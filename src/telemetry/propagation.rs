//! The trace context across HTTP: read from a request's `traceparent` (W3C) or B3 headers (what
//! the Python runner's aiozipkin sent and read), written into the runner's own requests to
//! forges, the VCS store and workers.

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Installs the propagators: W3C trace context and B3 (what aiozipkin spoke), both read and
/// both written, so callers of either kind join the same trace.
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(super::zipkin::B3Propagator),
    ]));
}

/// Makes `span` a child of the trace the request's headers carry, if any. Without the
/// OpenTelemetry layer installed this does nothing.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Only fails when no OpenTelemetry layer is installed: then there is no trace to join.
    let _ = span.set_parent(parent);
}

/// The request with the current span's trace context in its headers.
pub fn traced(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let context = tracing::Span::current().context();
    let mut headers = http::HeaderMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
    });
    if headers.is_empty() {
        request
    } else {
        request.headers(headers)
    }
}
