//! Counts since start: per policy allowed / refused / would-refuse, the keys refused most, and
//! backend failures. Lock-free on the allowed path; refusals touch a sharded map.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use dashmap::DashMap;

/// How many distinct refused keys are remembered (a flood of new addresses cannot grow it).
const MAX_TRACKED_KEYS: usize = 10_000;

/// Counters of one policy.
#[derive(Debug, Default)]
pub struct PolicyCounts {
    /// Requests within the quota.
    pub allowed: AtomicU64,
    /// Requests refused with 429 (enforce mode).
    pub refused: AtomicU64,
    /// Requests shadow mode would have refused.
    pub would_refuse: AtomicU64,
    /// Unix seconds of the last shadow-mode log line of this policy.
    last_shadow_log: AtomicU64,
}

/// Every counter of the limiter.
#[derive(Debug)]
pub struct Stats {
    /// One entry per policy, in policy order.
    pub policies: Vec<PolicyCounts>,
    /// Refusals (real or shadow) per `(policy index, key)`.
    top: DashMap<(usize, String), u64>,
    /// Redis errors and timeouts.
    pub backend_errors: AtomicU64,
    /// Unix seconds of the last backend warning (warnings are logged once a minute).
    last_warning: AtomicU64,
}

impl Stats {
    /// Zeroed counters for `n` policies.
    pub fn new(n: usize) -> Self {
        Self {
            policies: (0..n).map(|_| PolicyCounts::default()).collect(),
            top: DashMap::new(),
            backend_errors: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
        }
    }

    /// Records an admitted request.
    pub fn allowed(&self, policy: usize) {
        self.policies[policy].allowed.fetch_add(1, Relaxed);
    }

    /// Records a refusal, real (`enforced`) or shadow, against `key`.
    pub fn refused(&self, policy: usize, key: &dyn std::fmt::Display, enforced: bool) {
        let counts = &self.policies[policy];
        if enforced {
            counts.refused.fetch_add(1, Relaxed);
        } else {
            let total = counts.would_refuse.fetch_add(1, Relaxed) + 1;
            // Once a minute per policy, so a flood in shadow mode cannot flood the log.
            if once_a_minute(&counts.last_shadow_log) {
                tracing::info!(policy, %key, would_refuse = total, "shadow mode would have refused a request");
            }
        }
        let key = (policy, key.to_string());
        if let Some(mut n) = self.top.get_mut(&key) {
            *n += 1;
        } else if self.top.len() < MAX_TRACKED_KEYS {
            *self.top.entry(key).or_insert(0) += 1;
        }
    }

    /// The `limit` keys of `policy` refused most, most first.
    pub fn top_keys(&self, policy: usize, limit: usize) -> Vec<(String, u64)> {
        let mut keys: Vec<(String, u64)> = self
            .top
            .iter()
            .filter(|e| e.key().0 == policy)
            .map(|e| (e.key().1.clone(), *e.value()))
            .collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(limit);
        keys
    }

    /// Counts a backend failure; true when it should be logged (once a minute at most).
    pub fn backend_failed(&self) -> bool {
        self.backend_errors.fetch_add(1, Relaxed);
        once_a_minute(&self.last_warning)
    }
}

/// True at most once a minute for one `last` (Unix seconds of the previous true).
fn once_a_minute(last: &AtomicU64) -> bool {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let previous = last.load(Relaxed);
    now >= previous + 60
        && last
            .compare_exchange(previous, now, Relaxed, Relaxed)
            .is_ok()
}
