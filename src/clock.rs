//! The service's clock: the system's UTC time, which code in the same process (the tests) may
//! move to any instant. Domains whose rules depend on dates (billing periods, month ends, grace
//! days) read `state.clock` rather than the system clock, so those rules are tested at the
//! instants that matter. Nothing outside the process can move it.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

use chrono::{DateTime, Utc};

/// A clock: the system time plus an offset that starts at zero. Cheap to clone; clones share
/// the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// Now, in Unix microseconds.
    pub fn now_micros(&self) -> i64 {
        Utc::now().timestamp_micros() + self.offset_micros.load(Ordering::Relaxed)
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        crate::db::types::from_micros(self.now_micros())
    }

    /// Moves the clock so that it reads `at` now; it runs on from there.
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = at.timestamp_micros() - Utc::now().timestamp_micros();
        self.offset_micros.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_clock_reads_the_instant_it_was_set_to_and_runs_on() {
        let clock = Clock::default();
        let at = DateTime::parse_from_rfc3339("2027-01-31T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        clock.set(at);
        let read = clock.now();
        assert!(
            read >= at && read < at + chrono::Duration::seconds(5),
            "{read}"
        );
        let shared = clock.clone();
        assert!(shared.now() >= read);
    }
}
