//! How many requests the instance admits at once, adapted to what the database can serve within
//! `DATABASE_QUEUE_TARGET_MS` of queueing.
//!
//! Shedding every new request while the queue is long, and none once it is short, made clients
//! come back together a second later (`Retry-After: 1`) and the queue swing from full to empty:
//! measured at 2,000 connections, admitted p99 rose from 256 ms to 484 ms and throughput fell by
//! two thirds. Instead the limit follows Little's law: the queueing delay grows with the requests
//! in flight, so when a request arriving now would wait `wait` for a connection while `n` are in
//! flight, about `n × target / wait` in flight would wait `target`. Every [`ADAPT_EVERY`] the
//! limit moves to that (never below the pool's size, so the database is never left idle), and
//! while the wait is within the target it grows by a tenth (at least one) back towards
//! `MAX_IN_FLIGHT`. Requests beyond the limit are shed at once with 503.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

/// How often the limit is adapted.
pub const ADAPT_EVERY: Duration = Duration::from_millis(25);

/// The adaptive limit of one instance.
#[derive(Debug)]
pub struct AdaptiveLimit {
    epoch: Instant,
    target: Option<Duration>,
    floor: usize,
    ceiling: usize,
    limit: AtomicUsize,
    /// When the limit was last adapted (µs after `epoch`).
    adapted: AtomicU64,
}

impl AdaptiveLimit {
    /// A limit between `floor` (the pool's size) and `ceiling` (`MAX_IN_FLIGHT`) that keeps
    /// the queueing delay near `target`; with no target it stays at the ceiling.
    pub fn new(target: Option<Duration>, floor: usize, ceiling: usize) -> Self {
        Self {
            epoch: Instant::now(),
            target,
            floor: floor.clamp(1, ceiling.max(1)),
            ceiling,
            limit: AtomicUsize::new(ceiling),
            adapted: AtomicU64::new(0),
        }
    }

    /// The limit now, given the wait a request arriving now would see and the requests in
    /// flight; adapts it first when [`ADAPT_EVERY`] has passed since it last was.
    pub fn limit(&self, wait: Duration, in_flight: usize) -> usize {
        let Some(target) = self.target else {
            return self.ceiling;
        };
        let now = self.epoch.elapsed().as_micros() as u64;
        let last = self.adapted.load(Relaxed);
        if now.saturating_sub(last) >= ADAPT_EVERY.as_micros() as u64
            && self
                .adapted
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let current = self.limit.load(Relaxed);
            let next = self.next(current, wait, in_flight, target);
            self.limit.store(next, Relaxed);
            return next;
        }
        self.limit.load(Relaxed)
    }

    fn next(&self, current: usize, wait: Duration, in_flight: usize, target: Duration) -> usize {
        if wait > target {
            // What would have waited `target`: a share of what is in flight (or of the limit,
            // if fewer are in flight than it allows).
            let base = in_flight.min(current) as f64;
            let scaled = (base * target.as_secs_f64() / wait.as_secs_f64()) as usize;
            scaled.clamp(self.floor, self.ceiling)
        } else {
            (current + (current / 10).max(1)).min(self.ceiling)
        }
    }

    /// The limit as last adapted.
    pub fn current(&self) -> usize {
        self.limit.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(100);

    #[test]
    fn a_queue_twice_the_target_halves_what_is_admitted_but_never_below_the_pool() {
        let limit = AdaptiveLimit::new(Some(TARGET), 16, 1024);
        assert_eq!(
            limit.next(1024, Duration::from_millis(200), 1024, TARGET),
            512
        );
        assert_eq!(limit.next(512, Duration::from_secs(10), 512, TARGET), 16);
    }

    #[test]
    fn within_the_target_the_limit_grows_back_by_a_tenth_up_to_the_ceiling() {
        let limit = AdaptiveLimit::new(Some(TARGET), 16, 1024);
        assert_eq!(limit.next(100, Duration::from_millis(5), 40, TARGET), 110);
        assert_eq!(limit.next(16, Duration::ZERO, 0, TARGET), 17);
        assert_eq!(limit.next(1000, Duration::ZERO, 0, TARGET), 1024);
    }

    #[test]
    fn without_a_target_the_limit_is_the_ceiling() {
        let limit = AdaptiveLimit::new(None, 16, 1024);
        assert_eq!(limit.limit(Duration::from_secs(9), 1024), 1024);
    }
}
