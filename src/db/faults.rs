//! Whether the database is refusing writes for lack of storage: a full disk, a read-only file or
//! folder, an I/O error. A pool whose `SELECT 1` answers can still refuse every write, so health
//! asks this signal too, and a write probe clears it once writes work again.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Marks a response that failed on a storage fault, so the HTTP layer can record it.
#[derive(Debug, Clone, Copy)]
pub struct StorageFault;

/// The last storage fault seen and not yet cleared by a successful write probe.
#[derive(Debug, Default)]
pub struct StorageFaults {
    /// Whether a fault was ever recorded: until then the pool's checks on every checkout and
    /// return take no lock.
    ever: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current fault began; `None` while writes work.
    since: Option<Instant>,
    /// When the last fault ended.
    ended: Option<Instant>,
    /// When a background probe was last due.
    probed: Option<Instant>,
}

impl StorageFaults {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that a write just failed on storage.
    pub fn record(&self) {
        let mut state = self.state();
        if state.since.is_none() {
            tracing::error!("database writes are failing on storage; health reports unhealthy");
            state.since = Some(Instant::now());
            self.ever.store(true, Ordering::Release);
        }
    }

    /// Notes that a write succeeded: the fault, if any, is over.
    pub fn clear(&self) {
        let mut state = self.state();
        if let Some(at) = state.since.take() {
            tracing::warn!(
                after_s = at.elapsed().as_secs(),
                "database writes work again"
            );
            state.ended = Some(Instant::now());
        }
    }

    /// Whether a storage fault was seen and no write has succeeded since.
    pub fn is_failing(&self) -> bool {
        self.ever.load(Ordering::Acquire) && self.state().since.is_some()
    }

    /// Whether a fault is going on and no background probe was due within `every`; if so, one
    /// is due now. Lets the job runner clear a fault when nothing calls the health check.
    pub fn probe_due(&self, every: Duration) -> bool {
        let mut state = self.state();
        let due = state.since.is_some() && state.probed.is_none_or(|at| at.elapsed() >= every);
        if due {
            state.probed = Some(Instant::now());
        }
        due
    }

    /// Whether a connection opened `age` ago may have been spoiled by a fault: one is going on,
    /// or the connection is older than the end of the last one. SQLite opens a file it cannot
    /// write read-only and keeps it so for the life of the connection: after a read-only folder
    /// was made writable again, such connections failed 50-87 % of writes minutes later. The pool
    /// closes spoiled connections when they are checked out or returned.
    pub fn spoils(&self, age: Duration) -> bool {
        if !self.ever.load(Ordering::Acquire) {
            return false;
        }
        let state = self.state();
        state.since.is_some() || state.ended.is_some_and(|ended| age > ended.elapsed())
    }
}

/// Whether `code` means storage refused a write, which more space or restored permissions cure:
/// SQLite READONLY (8), IOERR (10), FULL (13), CANTOPEN (14), by primary code; PostgreSQL
/// read_only_sql_transaction (25006), disk_full (53100) and io_error (58030).
pub fn is_storage_code(code: &str) -> bool {
    if code.len() < 5 {
        return code
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, 8 | 10 | 13 | 14));
    }
    matches!(code, "25006" | "53100" | "58030")
}

/// Whether `e` is a storage fault (see [`is_storage_code`]).
pub fn is_storage_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_storage_code(&c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_read_only_and_failing_disks_are_storage_faults() {
        // 13 FULL, 8 READONLY, 778 IOERR_WRITE, 266 IOERR_READ, 14 CANTOPEN, then PostgreSQL.
        for code in ["13", "8", "778", "266", "14", "25006", "53100", "58030"] {
            assert!(is_storage_code(code), "{code}");
        }
        for code in ["5", "19", "2067", "1", "23505", "08006", "53300"] {
            assert!(!is_storage_code(code), "{code}");
        }
    }

    #[test]
    fn a_fault_lasts_until_a_write_succeeds() {
        let faults = StorageFaults::default();
        assert!(!faults.is_failing());
        faults.record();
        faults.record();
        assert!(faults.is_failing());
        faults.clear();
        assert!(!faults.is_failing());
    }

    #[test]
    fn a_background_probe_is_due_only_during_a_fault_and_at_most_once_per_interval() {
        let faults = StorageFaults::default();
        let every = Duration::from_secs(60);
        assert!(!faults.probe_due(every), "no fault");
        faults.record();
        assert!(faults.probe_due(every));
        assert!(!faults.probe_due(every), "not again within the interval");
        assert!(faults.probe_due(Duration::ZERO));
    }

    #[test]
    fn connections_older_than_the_end_of_a_fault_are_spoiled_and_newer_ones_are_not() {
        let faults = StorageFaults::default();
        assert!(!faults.spoils(Duration::from_secs(3600)), "no fault yet");
        faults.record();
        assert!(faults.spoils(Duration::ZERO), "during a fault");
        faults.clear();
        assert!(
            faults.spoils(Duration::from_secs(60)),
            "opened before it ended"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !faults.spoils(Duration::from_millis(1)),
            "opened after it ended"
        );
    }
}
