//! Requests shed instead of served, counted by reason and logged as one summary line per reason
//! at most once per [`LOG_EVERY`]: a flood of sheds must not become a flood of log lines (one
//! access-log line per shed request was about 33,000 lines a second at 2,000 connections). The
//! shed answers themselves carry [`Shed`], which keeps them out of the access log's info level.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

/// The summary lines' interval.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Marks a response as a shed request (for the access log).
#[derive(Debug, Clone, Copy)]
pub struct Shed;

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `MAX_IN_FLIGHT` requests were already in progress.
    InstanceFull,
    /// A request arriving now would queue for a database connection longer than
    /// `DATABASE_QUEUE_TARGET_MS`.
    DatabaseQueue,
    /// The database is down.
    DatabaseDown,
}

impl Reason {
    const ALL: [Reason; 3] = [
        Reason::InstanceFull,
        Reason::DatabaseQueue,
        Reason::DatabaseDown,
    ];

    /// The name in logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Reason::InstanceFull => "instance_full",
            Reason::DatabaseQueue => "database_queue",
            Reason::DatabaseDown => "database_down",
        }
    }
}

/// Counts since start and since the last summary line, per reason.
#[derive(Debug)]
pub struct ShedLog {
    epoch: Instant,
    totals: [AtomicU64; 3],
    pending: [AtomicU64; 3],
    /// When the last summary was written (ms after `epoch`, plus one); 0 before the first.
    last_logged: AtomicU64,
}

impl Default for ShedLog {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            totals: Default::default(),
            pending: Default::default(),
            last_logged: AtomicU64::new(0),
        }
    }
}

impl ShedLog {
    /// Counts one request shed for `reason`, and writes the summary when one is due.
    pub fn note(&self, reason: Reason) {
        self.totals[reason as usize].fetch_add(1, Relaxed);
        self.pending[reason as usize].fetch_add(1, Relaxed);
        self.flush_if_due();
    }

    /// Writes one line per reason with requests shed since the last summary, unless a summary
    /// was written less than [`LOG_EVERY`] ago (the upkeep task calls this too, so the last
    /// sheds of a burst are reported once it ends).
    pub fn flush_if_due(&self) {
        if self.pending.iter().all(|p| p.load(Relaxed) == 0) {
            // Nothing to report: the interval is not used up, so the next shed is reported at
            // once.
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_logged.load(Relaxed);
        if last != 0 && now - last < LOG_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_logged
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let interval_ms = if last == 0 { 0 } else { now - last };
        for reason in Reason::ALL {
            let count = self.pending[reason as usize].swap(0, Relaxed);
            if count > 0 {
                tracing::warn!(
                    count,
                    reason = reason.name(),
                    interval_ms,
                    total = self.totals[reason as usize].load(Relaxed),
                    "requests shed"
                );
            }
        }
    }

    /// Requests shed for `reason` since start.
    pub fn total(&self, reason: Reason) -> u64 {
        self.totals[reason as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_are_counted_by_reason_and_the_pending_count_empties_when_logged() {
        let log = ShedLog::default();
        for _ in 0..5 {
            log.note(Reason::DatabaseQueue);
        }
        log.note(Reason::DatabaseDown);
        assert_eq!(log.total(Reason::DatabaseQueue), 5);
        assert_eq!(log.total(Reason::DatabaseDown), 1);
        assert_eq!(log.total(Reason::InstanceFull), 0);
        // The first shed wrote a summary at once; the other five wait for the interval.
        assert_eq!(log.pending[Reason::DatabaseQueue as usize].load(Relaxed), 4);
        assert_eq!(log.pending[Reason::DatabaseDown as usize].load(Relaxed), 1);
    }

    #[test]
    fn a_check_with_nothing_pending_does_not_delay_the_next_sheds_report() {
        let log = ShedLog::default();
        log.flush_if_due();
        log.note(Reason::DatabaseDown);
        assert_eq!(log.pending[Reason::DatabaseDown as usize].load(Relaxed), 0);
    }
}
