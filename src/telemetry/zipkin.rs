//! Spans to a Zipkin collector in its v2 JSON form (`POST /api/v2/spans`), as the Python
//! runner's aiozipkin sent them, and the B3 headers aiozipkin read and wrote. The
//! `opentelemetry-zipkin` crate is deprecated upstream and its exporter no longer names the
//! service (every span lands under an empty `localEndpoint`), which would leave the runner's
//! spans apart from the service operators search for, so the runner writes the format itself.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, Value as OtelValue};
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};

use super::export::ExportClient;

/// Posts batches of spans to a collector's `/api/v2/spans` URL.
#[derive(Debug)]
pub struct ZipkinExporter {
    address: http::Uri,
    client: ExportClient,
    service_name: String,
}

impl ZipkinExporter {
    /// An exporter to `address`, naming `service_name` as every span's local endpoint.
    pub fn new(address: &str, client: ExportClient, service_name: &str) -> Result<Self, String> {
        let address: http::Uri = address
            .parse()
            .map_err(|e| format!("zipkin address {address:?}: {e}"))?;
        if !matches!(address.scheme_str(), Some("http" | "https")) {
            return Err(format!("zipkin address {address}: not an http(s) URL"));
        }
        Ok(Self {
            address,
            client,
            service_name: service_name.to_string(),
        })
    }

    /// The Zipkin v2 JSON of one span.
    fn span_json(&self, span: &SpanData) -> Value {
        let mut tags = Map::new();
        for attribute in &span.attributes {
            tags.insert(
                attribute.key.to_string(),
                Value::from(attribute_text(&attribute.value)),
            );
        }
        if let Status::Error { description } = &span.status {
            tags.insert("otel.status_code".into(), "ERROR".into());
            tags.insert("error".into(), description.to_string().into());
        }
        let start = micros(span.start_time);
        let annotations: Vec<Value> = span
            .events
            .iter()
            .map(|event| json!({"timestamp": micros(event.timestamp), "value": event.name}))
            .collect();
        let mut record = json!({
            "traceId": span.span_context.trace_id().to_string(),
            "id": span.span_context.span_id().to_string(),
            "name": span.name,
            "timestamp": start,
            "duration": micros(span.end_time).saturating_sub(start).max(1),
            "localEndpoint": {"serviceName": self.service_name},
            "tags": tags,
        });
        if span.parent_span_id != SpanId::INVALID {
            record["parentId"] = span.parent_span_id.to_string().into();
        }
        if let Some(kind) = zipkin_kind(&span.span_kind) {
            record["kind"] = kind.into();
        }
        if !annotations.is_empty() {
            record["annotations"] = annotations.into();
        }
        record
    }
}

/// Microseconds since the epoch, Zipkin's clock.
fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Zipkin tags are text.
fn attribute_text(value: &OtelValue) -> String {
    value.as_str().into_owned()
}

fn zipkin_kind(kind: &SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    }
}

impl SpanExporter for ZipkinExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans: Vec<Value> = batch.iter().map(|span| self.span_json(span)).collect();
        let body =
            serde_json::to_vec(&spans).map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let request = http::Request::post(self.address.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body))
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let response = self
            .client
            .send_bytes(request)
            .await
            .map_err(|e| OTelSdkError::InternalFailure(format!("zipkin: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "zipkin answered {}",
                response.status()
            )))
        }
    }
}

const B3_SINGLE: &str = "b3";
const B3_TRACE_ID: &str = "x-b3-traceid";
const B3_SPAN_ID: &str = "x-b3-spanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_FLAGS: &str = "x-b3-flags";
/// The headers B3 reads, as the propagator API lists them.
static B3_FIELDS: std::sync::LazyLock<[String; 5]> = std::sync::LazyLock::new(|| {
    [B3_SINGLE, B3_TRACE_ID, B3_SPAN_ID, B3_SAMPLED, B3_FLAGS].map(str::to_string)
});

/// B3 propagation: reads the single `b3` header or the `X-B3-*` headers, writes the latter
/// (aiozipkin's form).
#[derive(Debug, Default)]
pub struct B3Propagator;

/// A B3 trace id is 64 or 128 bits; a 64-bit one is the low half.
fn b3_trace_id(text: &str) -> Option<TraceId> {
    if text.len() != 16 && text.len() != 32 {
        return None;
    }
    TraceId::from_hex(text)
        .ok()
        .filter(|id| *id != TraceId::INVALID)
}

fn b3_span_id(text: &str) -> Option<SpanId> {
    if text.len() != 16 {
        return None;
    }
    SpanId::from_hex(text)
        .ok()
        .filter(|id| *id != SpanId::INVALID)
}

/// Sampled unless a `0`/`false` says otherwise (a debug flag says yes).
fn b3_sampled(sampled: Option<&str>, flags: Option<&str>) -> TraceFlags {
    let sampled = match (sampled, flags) {
        (_, Some("1")) => true,
        (Some("0" | "false" | "d"), _) => sampled == Some("d"),
        _ => true,
    };
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

impl B3Propagator {
    fn extract_span_context(extractor: &dyn Extractor) -> Option<SpanContext> {
        if let Some(single) = extractor.get(B3_SINGLE) {
            let mut parts = single.split('-');
            let trace_id = b3_trace_id(parts.next()?)?;
            let span_id = b3_span_id(parts.next()?)?;
            let flags = b3_sampled(parts.next(), None);
            return Some(SpanContext::new(
                trace_id,
                span_id,
                flags,
                true,
                TraceState::default(),
            ));
        }
        let trace_id = b3_trace_id(extractor.get(B3_TRACE_ID)?.trim())?;
        let span_id = b3_span_id(extractor.get(B3_SPAN_ID)?.trim())?;
        let flags = b3_sampled(extractor.get(B3_SAMPLED), extractor.get(B3_FLAGS));
        Some(SpanContext::new(
            trace_id,
            span_id,
            flags,
            true,
            TraceState::default(),
        ))
    }
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        injector.set(B3_TRACE_ID, context.trace_id().to_string());
        injector.set(B3_SPAN_ID, context.span_id().to_string());
        let sampled = if context.is_sampled() { "1" } else { "0" };
        injector.set(B3_SAMPLED, sampled.to_string());
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::extract_span_context(extractor) {
            Some(remote) => cx.with_remote_span_context(remote),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        opentelemetry::propagation::text_map_propagator::FieldIter::new(B3_FIELDS.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn extract(headers: &[(&str, &str)]) -> Option<SpanContext> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        B3Propagator::extract_span_context(&map)
    }

    #[test]
    fn reads_both_b3_forms_and_writes_the_multi_header_one() {
        let multi = extract(&[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ])
        .unwrap();
        assert_eq!(
            multi.trace_id().to_string(),
            "463ac35c9f6413ad48485a3953bb6124"
        );
        assert!(multi.is_sampled() && multi.is_remote());
        let single =
            extract(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]).unwrap();
        assert!(!single.is_sampled());
        let short = extract(&[
            ("x-b3-traceid", "48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ])
        .unwrap();
        assert_eq!(
            short.trace_id().to_string(),
            "000000000000000048485a3953bb6124"
        );
        assert!(extract(&[("x-b3-traceid", "zz"), ("x-b3-spanid", "a2fb4a1d1a96d312")]).is_none());
        assert!(
            extract(&[("b3", "0")]).is_none(),
            "a bare deny is no context"
        );

        let mut written = HashMap::new();
        let cx = Context::new().with_remote_span_context(multi);
        B3Propagator.inject_context(&cx, &mut written);
        assert_eq!(written["x-b3-spanid"], "a2fb4a1d1a96d312");
        assert_eq!(written["x-b3-sampled"], "1");
    }
}
