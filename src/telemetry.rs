//! The tracing subscriber: JSON lines for collectors, or pretty text for terminals.
//!
//! Lines are written by a background thread, never on the request path: a request hands its
//! access-log line to a bounded queue and moves on. When the queue is full (stderr blocked by a
//! slow collector) the line is dropped and counted rather than stalling requests; the count is
//! reported by `/api/status` as `log_lines_dropped`. Measured: writing the access log
//! synchronously under stderr's lock cost about 40% of `/api/auth/me` throughput at info.

use std::{fmt::Write as _, io::BufWriter, sync::OnceLock};

use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{
        self,
        format::{JsonFields, Writer},
        FormatFields, FormattedFields,
    },
    EnvFilter,
};

use crate::config::LogFormat;

/// Lines the queue holds before new ones are dropped (at a few hundred bytes a line, a few MB).
const QUEUE_LINES: usize = 16_384;
/// The writer thread's buffer: one write per batch of lines instead of one per line.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer thread; dropping it writes out what is queued. Hold it until exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the global subscriber. Safe to call more than once (later calls do nothing and
/// return an empty guard), which lets tests build several apps in one process.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("autorisen-log")
        .finish(BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let counter = writer.error_counter();
    let builder = fmt::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if installed.is_err() {
        return LogGuard(None);
    }
    let _ = DROPPED.set(counter);
    LogGuard(Some(guard))
}

/// Log lines dropped since start because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// The JSON fields of a span, as `JsonFields` writes them, except that a field recorded after
/// the span was created (`route`, `user_id`) is appended to the stored object instead of the
/// object being parsed and written again: that re-parse cost more instructions than the rest of
/// the request span (measured with callgrind: about 8,000 per `record`, two per signed-in
/// request). The lines are unchanged: the JSON formatter parses a span's fields into a sorted
/// map when it writes an event, where a repeated key keeps its last value, as before.
struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        if current.fields.pop() != Some('}') {
            return Err(std::fmt::Error);
        }
        let mut append = AppendJson {
            out: &mut current.fields,
            result: Ok(()),
        };
        fields.record(&mut append);
        let result = append.result;
        current.fields.push('}');
        result
    }
}

/// Appends `"name":value` members to an open JSON object, valued as `JsonFields` values them.
struct AppendJson<'a> {
    out: &'a mut String,
    result: std::fmt::Result,
}

impl AppendJson<'_> {
    fn member(&mut self, name: &str, value: serde_json::Value) {
        if !self.out.ends_with('{') {
            self.out.push(',');
        }
        let written = serde_json::to_string(name)
            .and_then(|k| Ok((k, serde_json::to_string(&value)?)))
            .map_err(|_| std::fmt::Error)
            .and_then(|(k, v)| write!(self.out, "{k}:{v}"));
        if written.is_err() {
            self.result = Err(std::fmt::Error);
        }
    }
}

impl Visit for AppendJson<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field.name(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field.name(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field.name(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field.name(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field.name(), value.into());
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.member(field.name(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // As `JsonFields`: `log.` fields are metadata of bridged `log` records; `r#` is dropped.
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.member(name, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::Empty;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines a request-like span writes, with our span fields or with `JsonFields`.
    fn lines(ours: bool) -> String {
        let buf = Buf::default();
        let writer = buf.clone();
        let builder = fmt::fmt()
            .with_writer(move || writer.clone())
            .without_time()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false);
        let run = || {
            let span = tracing::info_span!(
                "request",
                request_id = "0190-abc",
                method = %"GET",
                route = Empty,
                user_id = Empty,
            );
            span.in_scope(|| tracing::info!(step = 1, "before any record"));
            span.record("route", "/api/auth/me");
            span.in_scope(|| tracing::info!(step = 2, "after one"));
            span.record("user_id", "u-\"quoted\"\n");
            span.record("route", "/api/auth/me/again");
            let bare = tracing::info_span!("bare", late = Empty, n = Empty);
            bare.record("late", 1.5);
            bare.record("n", -3_i64);
            bare.in_scope(|| tracing::info!("in a span created without fields"));
            span.in_scope(|| tracing::info!(status = 200_u64, ok = true, "request finished"));
        };
        if ours {
            tracing::subscriber::with_default(builder.fmt_fields(SpanFields).finish(), run);
        } else {
            tracing::subscriber::with_default(builder.finish(), run);
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fields_recorded_after_a_span_starts_are_logged_as_json_fields_logs_them() {
        let ours = lines(true);
        assert_eq!(ours.lines().count(), 4);
        assert!(ours.contains(r#""user_id":"u-\"quoted\"\n""#), "{ours}");
        assert_eq!(ours, lines(false));
    }
}
