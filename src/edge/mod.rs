//! Edge protection: rate limits (shared through Redis when configured), abuse scoring with
//! escalating bans, and in-flight caps. The HTTP side is [`middleware::guard`]; operators read
//! the counters through `domains::edge`. See `docs/edge.md`.

mod abuse;
pub mod ban_store;
pub mod bans;
mod conn;
pub mod gcra;
pub mod headers;
pub mod limiter;
mod limiter_redis;
pub mod middleware;
pub mod policy;
pub mod settings;
pub mod stats;

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::response::Response;

use crate::{db::Db, kv::Kv};

use self::{
    abuse::Abuse,
    ban_store::BanStore,
    bans::Bans,
    conn::ConnGuard,
    headers::RateHeaders,
    limiter::{LimitKey, Limiter},
    limiter_redis::RedisLimiter,
    settings::EdgeSettings,
};

/// The edge state of one instance. Cheap to clone.
#[derive(Clone)]
pub struct Edge(Arc<Inner>);

/// What [`Edge`] holds.
pub struct Inner {
    /// The rate limiter and its counters.
    pub limiter: Limiter,
    /// Bans, local and shared.
    pub bans: Bans,
    abuse: Abuse,
    conn: Arc<ConnGuard>,
}

impl std::ops::Deref for Edge {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Edge")
    }
}

impl Edge {
    /// The edge over Redis (`kv`) when configured, else process memory and the database.
    pub fn new(settings: &EdgeSettings, kv: Option<Kv>, db: Db) -> Self {
        let redis = kv
            .clone()
            .map(|kv| RedisLimiter::new(kv, &settings.redis_prefix, settings.redis_timeout));
        let store = match kv {
            Some(kv) => BanStore::Redis {
                kv: Box::new(kv),
                key: format!("{}bans", settings.redis_prefix),
                ttl: settings.abuse.strike_memory,
            },
            None => BanStore::Db(db),
        };
        Self(Arc::new(Inner {
            limiter: Limiter::new(settings.policies.clone(), redis, settings.fail_closed),
            bans: Bans::new(store, settings.abuse.clone()),
            abuse: Abuse::new(settings.abuse.clone()),
            conn: ConnGuard::new(
                settings.conn.max_in_flight,
                settings.conn.max_concurrent_per_ip,
            ),
        }))
    }

    /// Starts the upkeep task: reload shared bans every `sync_every`, forget idle state every
    /// minute. It ends when the last clone of this edge is dropped.
    pub fn spawn_upkeep(&self, sync_every: Duration) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sync_every);
            let mut last_sweep = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = inner.bans.sync().await {
                    tracing::debug!(error = %e, "could not reload the shared ban list");
                }
                if last_sweep.elapsed() >= Duration::from_secs(60) {
                    inner.limiter.sweep();
                    inner.abuse.sweep();
                    last_sweep = tokio::time::Instant::now();
                }
            }
        });
    }

    /// Scores an offence of `ip`; when it crosses the threshold the client is banned and the
    /// seconds of the ban are returned.
    pub async fn offend(&self, ip: IpAddr, points: u32, reason: &str) -> Option<u64> {
        if !self.abuse.add(ip, points) {
            return None;
        }
        let ban = self.bans.ban(ip, reason).await;
        let left = ban.until - crate::db::types::now_micros();
        Some((left.max(1) as u64).div_ceil(1_000_000))
    }

    /// Spends one request of user `user_id` on the per-user (`ai`) policies: the headers to
    /// add to the answer, or the 429 answer itself. For the assistant's handlers.
    pub async fn check_user(&self, user_id: &str) -> Result<RateHeaders, Response> {
        let (which, policy) = self.limiter.for_user();
        self.check_key(which, policy, LimitKey::User(user_id.into()))
            .await
    }

    /// Spends one attempt against the target account of a credential route (login, register,
    /// password reset) on the `auth` policies, so that an attacker spreading guesses over many
    /// addresses still meets a per-account budget. `email` is hashed before use as a key.
    pub async fn check_account(&self, email: &str) -> Result<(), crate::error::AppError> {
        use sha2::Digest;
        let digest = hex::encode(&sha2::Sha256::digest(email.trim().to_lowercase())[..12]);
        let (which, policy) = self.limiter.for_account();
        match self
            .check_key(which, policy, LimitKey::Account(digest.into()))
            .await
        {
            Ok(_) => Ok(()),
            Err(res) if res.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE => Err(
                crate::error::AppError::Unavailable("rate limits cannot be checked".into()),
            ),
            Err(res) => Err(crate::error::AppError::TooManyRequests {
                retry_after: res
                    .headers()
                    .get(axum::http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(60),
                detail: "Too many attempts for this account; retry later.".into(),
            }),
        }
    }

    async fn check_key(
        &self,
        which: &[usize],
        policy: Option<&axum::http::HeaderValue>,
        key: LimitKey,
    ) -> Result<RateHeaders, Response> {
        let verdict = self.limiter.check(which, &key).await;
        if verdict.unavailable {
            return Err(headers::retry_later(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "Rate limits cannot be checked right now; retry shortly.",
                1,
            ));
        }
        let rate_headers = RateHeaders::new(policy, &self.limiter.policies, &verdict);
        if verdict.refused {
            return Err(headers::refused(
                rate_headers,
                &self.limiter.policies,
                &verdict,
            ));
        }
        Ok(rate_headers)
    }
}
