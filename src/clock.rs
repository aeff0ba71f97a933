//! The service's clock: the system's UTC time, which code in the same process (the tests) may
//! move to any instant. Domains whose rules depend on dates (billing periods, month ends, grace
//! days) read `state.clock` rather than the system clock, so those rules are tested at the
//! instants that matter. Nothing outside the process can move it.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

use chrono::{DateTime, Utc};

/// A clock: the system time plus an offset that starts at zero, or an instant it was frozen at.
/// Cheap to clone; clones share the setting.
#[derive(Debug, Clone)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
    frozen_micros: Arc<AtomicI64>,
}

/// `frozen_micros` when the clock runs.
const RUNNING: i64 = i64::MIN;

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_micros: Arc::default(),
            frozen_micros: Arc::new(AtomicI64::new(RUNNING)),
        }
    }
}

impl Clock {
    /// Now, in Unix microseconds.
    pub fn now_micros(&self) -> i64 {
        match self.frozen_micros.load(Ordering::Relaxed) {
            RUNNING => Utc::now().timestamp_micros() + self.offset_micros.load(Ordering::Relaxed),
            frozen => frozen,
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        crate::db::types::from_micros(self.now_micros())
    }

    /// Moves the clock so that it reads `at` now; it runs on from there.
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = at.timestamp_micros() - Utc::now().timestamp_micros();
        self.offset_micros.store(offset, Ordering::Relaxed);
        self.frozen_micros.store(RUNNING, Ordering::Relaxed);
    }

    /// Stops the clock at `at`: it reads `at` until it is set or frozen again.
    pub fn freeze(&self, at: DateTime<Utc>) {
        self.frozen_micros
            .store(at.timestamp_micros(), Ordering::Relaxed);
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
        shared.freeze(at);
        assert_eq!(clock.now(), at);
        clock.set(at);
        assert!(shared.now() >= at);
    }
}
