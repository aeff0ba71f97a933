//! How long a new request would wait for a database connection, and whether the database
//! answers at all, known without asking it on the request path.
//!
//! A background sampler checks a connection out of the pool like a request does (it queues in
//! the same fair line) and runs `SELECT 1` on it, every [`SAMPLE_EVERY`]. Its wait is the queueing
//! delay a request arriving now would see; while a sample is still waiting, the time it has
//! waited so far already counts, so a queue that grows is seen as it grows, not once it drained.
//! A sample that fails on the connection (refused, reset, a server shutting down), or that
//! cannot get a connection in [`DOWN_AFTER`] while the pool had room to open one, marks the
//! database down; the next sample that succeeds marks it up. The edge reads [`PoolWatch::state`]
//! (three atomic loads) for every request and sheds instead of queueing: see `docs/edge.md`.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use sqlx::AnyPool;

/// How often the sampler checks a connection out while the database answers.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// How often it tries again while the database is down.
pub const RETRY_DOWN_EVERY: Duration = Duration::from_millis(250);
/// A sample that waited this long for a connection while the pool could have opened one means
/// the database is not accepting connections (the pool retries a refused connect until its
/// acquire timeout, 5 s, which is what every request used to wait).
pub const DOWN_AFTER: Duration = Duration::from_secs(1);

/// What the watch knows about the database right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    /// A request arriving now would wait about this long for a connection.
    Queueing(Duration),
    /// The database refuses or drops connections; requests would wait for nothing.
    Down,
}

/// The sampler's findings, read lock-free by every request.
#[derive(Debug)]
pub struct PoolWatch {
    epoch: Instant,
    /// The last completed sample's wait (µs).
    last_wait: AtomicU64,
    /// When the sample in progress began waiting (µs after `epoch`, plus one); 0 when none is.
    waiting_since: AtomicU64,
    down: AtomicBool,
}

impl Default for PoolWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_wait: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }
}

impl PoolWatch {
    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The database's state: down, or the wait a request arriving now would see (the longer of
    /// the last sample's wait and the wait of the sample still in the queue).
    pub fn state(&self) -> DbState {
        if self.down.load(Ordering::Acquire) {
            return DbState::Down;
        }
        let mut wait = self.last_wait.load(Ordering::Acquire);
        let since = self.waiting_since.load(Ordering::Acquire);
        if since != 0 {
            wait = wait.max(self.micros().saturating_sub(since - 1));
        }
        DbState::Queueing(Duration::from_micros(wait))
    }

    fn begin_sample(&self) {
        self.waiting_since
            .store(self.micros() + 1, Ordering::Release);
    }

    fn sampled(&self, wait: Duration) {
        self.last_wait
            .store(wait.as_micros() as u64, Ordering::Release);
        self.waiting_since.store(0, Ordering::Release);
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::warn!("the database answers again; requests are admitted");
        }
    }

    fn failed(&self, why: &str) {
        self.waiting_since.store(0, Ordering::Release);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::error!(
                reason = why,
                "the database is down; requests are answered 503 at once until it answers"
            );
        }
    }

    /// Starts the sampler on `pool` (of at most `max_connections`); it ends when the last
    /// strong reference to this watch is dropped or the pool is closed.
    pub fn spawn_sampler(self: &Arc<Self>, pool: AnyPool, max_connections: u32) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(watch) = weak.upgrade() else { return };
                if pool.is_closed() {
                    return;
                }
                let pause = sample(&watch, &pool, max_connections).await;
                drop(watch);
                tokio::time::sleep(pause).await;
            }
        });
    }
}

/// One sample; returns how long to wait before the next.
async fn sample(watch: &PoolWatch, pool: &AnyPool, max_connections: u32) -> Duration {
    // Whether the pool could open a connection for this sample instead of queueing it.
    let room = pool.num_idle() > 0 || pool.size() < max_connections;
    watch.begin_sample();
    let started = Instant::now();
    // Only getting a connection can say "down" by taking too long; a slow `SELECT 1` on one
    // that works is a busy database (measured: under 2,000 connections on two shared cores it
    // took over a second), and counts as waiting.
    let acquire_within = if room {
        DOWN_AFTER
    } else {
        // The pool is busy: the sample queues behind requests, as long as they take.
        Duration::from_secs(30)
    };
    let mut conn = match tokio::time::timeout(acquire_within, pool.acquire()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) if is_connection_failure(&e) => {
            watch.failed(&e.to_string());
            return RETRY_DOWN_EVERY;
        }
        Err(_) if room => {
            watch.failed("no connection could be opened within 1 s");
            return RETRY_DOWN_EVERY;
        }
        // A pool timeout behind busy connections: the queue was long.
        Ok(Err(_)) | Err(_) => {
            watch.sampled(started.elapsed());
            return SAMPLE_EVERY;
        }
    };
    let waited = started.elapsed();
    let checked = sqlx::query("SELECT 1").execute(&mut *conn);
    match tokio::time::timeout(Duration::from_secs(5), checked).await {
        Ok(Ok(_)) => watch.sampled(waited),
        Ok(Err(e)) if is_connection_failure(&e) => {
            watch.failed(&e.to_string());
            return RETRY_DOWN_EVERY;
        }
        Ok(Err(_)) | Err(_) => watch.sampled(started.elapsed()),
    }
    SAMPLE_EVERY
}

/// Whether `e` says the connection to the database failed (not that the pool was busy).
fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_still_waiting_counts_its_wait_so_far() {
        let watch = PoolWatch::default();
        assert_eq!(watch.state(), DbState::Queueing(Duration::ZERO));
        watch.begin_sample();
        std::thread::sleep(Duration::from_millis(20));
        let DbState::Queueing(wait) = watch.state() else {
            panic!("not down")
        };
        assert!(wait >= Duration::from_millis(20), "{wait:?}");
        watch.sampled(Duration::from_millis(3));
        assert_eq!(watch.state(), DbState::Queueing(Duration::from_millis(3)));
    }

    #[test]
    fn down_lasts_until_a_sample_succeeds() {
        let watch = PoolWatch::default();
        watch.begin_sample();
        watch.failed("refused");
        assert_eq!(watch.state(), DbState::Down);
        watch.begin_sample();
        assert_eq!(watch.state(), DbState::Down, "still down while retrying");
        watch.sampled(Duration::from_millis(1));
        assert_eq!(watch.state(), DbState::Queueing(Duration::from_millis(1)));
    }
}
