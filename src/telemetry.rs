//! The tracing subscriber: JSON lines for collectors, or pretty text for terminals.
//!
//! Lines are written by a background thread, never on the request path: a request hands its
//! access-log line to a bounded queue and moves on. When the queue is full (stderr blocked by a
//! slow collector) the line is dropped and counted rather than stalling requests; the count is
//! reported by `/api/status` as `log_lines_dropped`. Measured: writing the access log
//! synchronously under stderr's lock cost about 40% of `/api/auth/me` throughput at info.

use std::{io::BufWriter, sync::OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{fmt, EnvFilter};

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
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
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
