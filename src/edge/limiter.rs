//! The rate limiter: GCRA per policy and key, in process memory or in Redis.
//!
//! Memory state is a sharded map per policy (no global lock). With Redis, one script call
//! decides every policy of a request atomically, so instances share one budget. When Redis
//! fails the limiter falls back to the memory state of this instance (fail open) or answers
//! "unavailable" (fail closed); the failure is counted and logged once a minute.

use std::{sync::atomic::Ordering::Relaxed, time::Instant};

use axum::http::HeaderValue;
use dashmap::DashMap;

pub use super::verdict::{client_network, LimitKey, Verdict};
use super::{
    gcra::{self, Decision},
    limiter_redis::RedisLimiter,
    policy::{policy_value, Class, Mode, Policy},
    stats::Stats,
};

/// Every policy with its state.
pub struct Limiter {
    /// The policies, in header order.
    pub policies: Vec<Policy>,
    /// Policy sets with their `RateLimit-Policy` value: general, general + auth, ai, auth.
    sets: [(Vec<usize>, Option<HeaderValue>); 5],
    memory: Vec<DashMap<LimitKey, u64>>,
    redis: Option<RedisLimiter>,
    fail_closed: bool,
    epoch: Instant,
    /// Counters since start.
    pub stats: Stats,
}

impl Limiter {
    /// A limiter over `policies` (those in mode `off` are never checked).
    pub fn new(policies: Vec<Policy>, redis: Option<RedisLimiter>, fail_closed: bool) -> Self {
        let active = |classes: &[Class]| -> (Vec<usize>, Option<HeaderValue>) {
            let which: Vec<usize> = (0..policies.len())
                .filter(|i| {
                    let p = &policies[*i];
                    classes.contains(&p.class) && p.mode != Mode::Off && !p.ipv6_48
                })
                .collect();
            let header = policy_value(&policies, &which);
            (which, header)
        };
        let ipv6_48: Vec<usize> = (0..policies.len())
            .filter(|i| policies[*i].ipv6_48 && policies[*i].mode != Mode::Off)
            .collect();
        let ipv6_48_header = policy_value(&policies, &ipv6_48);
        let sets = [
            active(&[Class::General]),
            active(&[Class::General, Class::Auth]),
            active(&[Class::Ai]),
            active(&[Class::Auth]),
            (ipv6_48, ipv6_48_header),
        ];
        Self {
            memory: policies.iter().map(|_| DashMap::new()).collect(),
            stats: Stats::new(policies.len()),
            policies,
            sets,
            redis,
            fail_closed,
            epoch: Instant::now(),
        }
    }

    /// The active policies of a request to a route (`auth` for credential routes) and their
    /// `RateLimit-Policy` value.
    pub fn for_request(&self, auth: bool) -> (&[usize], Option<&HeaderValue>) {
        let (which, header) = &self.sets[usize::from(auth)];
        (which, header.as_ref())
    }

    /// The active per-user policies (the assistant's) and their `RateLimit-Policy` value.
    pub fn for_user(&self) -> (&[usize], Option<&HeaderValue>) {
        let (which, header) = &self.sets[2];
        (which, header.as_ref())
    }

    /// The active aggregate policy of an IPv6 /48, if any.
    pub fn for_ipv6_48(&self) -> (&[usize], Option<&HeaderValue>) {
        let (which, header) = &self.sets[4];
        (which, header.as_ref())
    }

    /// The active `auth` policies, applied per target account of a credential route.
    pub fn for_account(&self) -> (&[usize], Option<&HeaderValue>) {
        let (which, header) = &self.sets[3];
        (which, header.as_ref())
    }

    /// Whether the Redis circuit is open (Redis failed and no probe has had an answer since);
    /// `None` without Redis.
    pub fn redis_circuit_open(&self) -> Option<bool> {
        self.redis.as_ref().map(RedisLimiter::circuit_open)
    }

    /// Times the Redis circuit opened since start (0 without Redis).
    pub fn redis_circuit_trips(&self) -> u64 {
        self.redis.as_ref().map_or(0, RedisLimiter::circuit_trips)
    }

    /// Whether the limiter keeps its state in Redis.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Checks (and spends) one request of `key` against each policy in `which`.
    pub async fn check(&self, which: &[usize], key: &LimitKey) -> Verdict {
        if which.is_empty() {
            return Verdict::default();
        }
        let decisions = match self.shared(which, key).await {
            Some(Ok(d)) => d,
            Some(Err(())) if self.fail_closed => {
                return Verdict {
                    unavailable: true,
                    ..Verdict::default()
                }
            }
            _ => self.in_memory(which, key),
        };
        let mut refused = false;
        for (i, d) in &decisions {
            let enforced = self.policies[*i].mode == Mode::Enforce;
            if d.allowed {
                self.stats.allowed(*i);
            } else {
                self.stats.refused(*i, key, enforced);
                refused |= enforced;
            }
        }
        Verdict {
            decisions,
            refused,
            unavailable: false,
        }
    }

    /// Redis, unless absent (`None`) or recently failed (`Some(Err)`, without waiting again).
    async fn shared(
        &self,
        which: &[usize],
        key: &LimitKey,
    ) -> Option<Result<Vec<(usize, Decision)>, ()>> {
        let redis = self.redis.as_ref()?;
        let policies: Vec<&Policy> = which.iter().map(|i| &self.policies[*i]).collect();
        match redis.check(&policies, key).await {
            Ok(decisions) => Some(Ok(which.iter().copied().zip(decisions).collect())),
            Err(e) => {
                // While Redis is down its circuit is open (see `Kv`): this failed at once.
                if self.stats.backend_failed() {
                    tracing::warn!(
                        error = %e,
                        errors = self.stats.backend_errors.load(Relaxed),
                        fail_closed = self.fail_closed,
                        "rate-limit backend unavailable; {}",
                        if self.fail_closed { "refusing limited requests" } else { "using per-instance limits" }
                    );
                }
                Some(Err(()))
            }
        }
    }

    /// Decides every policy while holding each key's entry (maps locked in policy order, so
    /// never a deadlock); nothing is spent when an enforced policy refuses.
    fn in_memory(&self, which: &[usize], key: &LimitKey) -> Vec<(usize, Decision)> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut entries = Vec::with_capacity(which.len());
        let mut decisions = Vec::with_capacity(which.len());
        let mut refused = false;
        for &i in which {
            let q = self.policies[i].quota;
            let window = q.window_secs * 1_000_000_000;
            let interval = (window / q.limit).max(1);
            let entry = self.memory[i].entry(key.clone()).or_insert(0);
            let (decision, next) = gcra::decide(*entry, now, interval, window, 1_000_000_000);
            refused |= !decision.allowed && self.policies[i].mode == Mode::Enforce;
            entries.push((entry, next));
            decisions.push((i, decision));
        }
        if !refused {
            for (mut entry, next) in entries {
                if let Some(next) = next {
                    *entry = next;
                }
            }
        }
        decisions
    }

    /// Forgets keys whose budget is full again (called periodically to bound memory).
    pub fn sweep(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        for map in &self.memory {
            map.retain(|_, tat| *tat > now);
        }
    }
}
