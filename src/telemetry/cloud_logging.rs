//! `--gcp-logging`: one JSON object per line in Google Cloud Logging's structured format, which
//! its agents (and Cloud Run, GKE) turn into log entries: `severity`, `message`, `time`, the
//! trace and span the line was written in (`logging.googleapis.com/trace`, `.../spanId`), the
//! fields of the enclosing spans as labels, the event's own fields in the payload.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Writes Cloud Logging records to what `make_writer` gives.
#[derive(Debug)]
pub struct CloudLoggingLayer<W> {
    make_writer: W,
    /// `projects/<id>/traces/` when the project is known (`GOOGLE_CLOUD_PROJECT`), so Cloud
    /// Logging links a line to its trace; otherwise the bare trace id.
    trace_prefix: String,
}

impl<W> CloudLoggingLayer<W> {
    /// A layer writing each record with one write to a writer from `make_writer`.
    pub fn new(make_writer: W) -> Self {
        let trace_prefix = std::env::var("GOOGLE_CLOUD_PROJECT")
            .ok()
            .filter(|project| !project.is_empty())
            .map(|project| format!("projects/{project}/traces/"))
            .unwrap_or_default();
        Self {
            make_writer,
            trace_prefix,
        }
    }
}

/// A span's fields, kept as text: Cloud Logging labels are strings.
#[derive(Debug, Default)]
struct SpanLabels(BTreeMap<&'static str, String>);

impl Visit for SpanLabels {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name(), text);
    }
}

/// An event's fields as JSON, its message apart.
#[derive(Debug, Default)]
struct EventFields {
    message: String,
    fields: Map<String, Value>,
}

impl EventFields {
    fn insert(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

/// Cloud Logging's severity names.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, W> tracing_subscriber::Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut labels = SpanLabels::default();
        attributes.record(&mut labels);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(labels);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(labels) = span.extensions_mut().get_mut::<SpanLabels>()
        {
            values.record(labels);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let mut labels = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_labels) = span.extensions().get::<SpanLabels>() {
                    // `otel.*` fields steer the exporter (span name, kind), they say nothing
                    // about the request.
                    for (name, value) in span_labels
                        .0
                        .iter()
                        .filter(|(n, _)| !n.starts_with("otel."))
                    {
                        labels.insert((*name).to_string(), Value::from(value.as_str()));
                    }
                }
            }
        }
        let message = if fields.message.is_empty() {
            metadata.name().to_string()
        } else {
            std::mem::take(&mut fields.message)
        };
        let mut record = fields.fields;
        record.insert("severity".into(), severity(*metadata.level()).into());
        record.insert("message".into(), message.into());
        record.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        record.insert("target".into(), metadata.target().into());
        if let (Some(file), Some(line)) = (metadata.file(), metadata.line()) {
            record.insert(
                "logging.googleapis.com/sourceLocation".into(),
                serde_json::json!({"file": file, "line": line.to_string(), "function": metadata.target()}),
            );
        }
        if !labels.is_empty() {
            record.insert(
                "logging.googleapis.com/labels".into(),
                Value::Object(labels),
            );
        }
        if ctx.event_span(event).is_some() {
            self.add_trace(&mut record);
        }
        let mut line = Value::Object(record).to_string();
        line.push('\n');
        // A log line that cannot be written has nowhere else to go.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

impl<W> CloudLoggingLayer<W> {
    /// The trace and span the event was written in, when the OpenTelemetry layer knows them.
    fn add_trace(&self, record: &mut Map<String, Value>) {
        let context = tracing::Span::current().context();
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        record.insert(
            "logging.googleapis.com/trace".into(),
            format!("{}{}", self.trace_prefix, span_context.trace_id()).into(),
        );
        record.insert(
            "logging.googleapis.com/spanId".into(),
            span_context.span_id().to_string().into(),
        );
        record.insert(
            "logging.googleapis.com/trace_sampled".into(),
            span_context.is_sampled().into(),
        );
    }
}
