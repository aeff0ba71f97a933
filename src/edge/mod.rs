//! Edge protection: rate limits (shared through Redis when configured), abuse scoring with
//! escalating bans, and in-flight caps. The HTTP side is [`middleware::GuardLayer`]; operators read
//! the counters through `domains::protection`. See `docs/edge.md`.

mod abuse;
pub mod adaptive;
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
pub mod shed;
pub mod stats;
pub mod verdict;

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::response::Response;

use crate::{
    db::{Db, DbState},
    kv::Kv,
};

use self::{
    abuse::Abuse,
    adaptive::AdaptiveLimit,
    ban_store::BanStore,
    bans::Bans,
    conn::ConnGuard,
    headers::RateHeaders,
    limiter::{LimitKey, Limiter},
    limiter_redis::RedisLimiter,
    policy::RouteTable,
    settings::EdgeSettings,
    shed::{Reason, ShedLog},
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
    routes: RouteTable,
    /// Requests shed, by reason.
    pub shed: ShedLog,
    /// How many requests are admitted at once (adapted to the database's queue).
    pub adaptive: AdaptiveLimit,
    db: Db,
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
    /// The edge over Redis (`kv`) when configured, else process memory and the database, with
    /// the route classes every domain declared.
    pub fn new(settings: &EdgeSettings, kv: Option<Kv>, db: Db, routes: RouteTable) -> Self {
        let redis = kv
            .clone()
            .map(|kv| RedisLimiter::new(kv, &settings.redis_prefix, settings.redis_timeout));
        let store = BanStore::for_settings(settings, kv, db.clone());
        Self(Arc::new(Inner {
            limiter: Limiter::new(settings.policies.clone(), redis, settings.fail_closed),
            bans: Bans::new(store, settings.abuse.clone()),
            abuse: Abuse::new(settings.abuse.clone()),
            conn: ConnGuard::new(
                settings.conn.max_in_flight,
                settings.conn.max_concurrent_per_ip,
            ),
            routes,
            shed: ShedLog::default(),
            adaptive: AdaptiveLimit::new(
                settings.conn.db_queue_target,
                db.max_connections() as usize,
                settings.conn.max_in_flight,
            ),
            db,
        }))
    }

    /// Lets a request of `ip` in, or says why it is shed: the database is down; the requests
    /// in flight reached the limit that keeps the database's queue within
    /// `DATABASE_QUEUE_TARGET_MS` ([`adaptive`]); or they reached `MAX_IN_FLIGHT`. A client
    /// over its own share (`MAX_CONCURRENT_PER_IP`) is `Ok(Err(()))`: refused, not shed.
    pub fn enter(&self, ip: IpAddr) -> Result<Result<conn::InFlight, ()>, Reason> {
        let wait = match self.db.watch().state() {
            DbState::Down => return Err(Reason::DatabaseDown),
            DbState::Queueing(wait) => wait,
        };
        let limit = self.adaptive.limit(wait, self.conn.in_flight());
        match self.conn.enter(ip, limit) {
            Ok(permit) => Ok(Ok(permit)),
            Err(conn::Full::Client) => Ok(Err(())),
            Err(conn::Full::Instance) if limit < self.conn.max_in_flight() => {
                Err(Reason::DatabaseQueue)
            }
            Err(conn::Full::Instance) => Err(Reason::InstanceFull),
        }
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
                inner.shed.flush_if_due();
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

    /// Spends one request of user `user_id` on the per-user (`ai`) policies. For the
    /// assistant's handlers, which turn a refusal into their own answer (or
    /// [`Admission::into_response`]).
    pub async fn check_user(&self, user_id: &str) -> Admission {
        let (which, policy) = self.limiter.for_user();
        self.check_key(which, policy, LimitKey::User(user_id.into()))
            .await
    }

    /// Spends one attempt against the target account of a credential route (login, register,
    /// password reset) on the `auth` policies, so that an attacker spreading guesses over many
    /// addresses still meets a per-account budget. `email` is hashed before use as a key.
    pub async fn check_account(&self, email: &str) -> Admission {
        use sha2::Digest;
        let digest = hex::encode(&sha2::Sha256::digest(email.trim().to_lowercase())[..12]);
        let (which, policy) = self.limiter.for_account();
        self.check_key(which, policy, LimitKey::Account(digest.into()))
            .await
    }

    /// Spends one request of client network `ip` on the general policies, plus the `auth` ones
    /// when `auth` is set.
    pub async fn check_ip(&self, ip: IpAddr, auth: bool) -> Admission {
        let (which, policy) = self.limiter.for_request(auth);
        let client = self.check_key(which, policy, LimitKey::ip(ip)).await;
        // An IPv6 client also spends from its /48's aggregate budget.
        let IpAddr::V6(v6) = ip else {
            return client;
        };
        if !matches!(client, Admission::Allowed(_)) {
            return client;
        }
        let (which, policy) = self.limiter.for_ipv6_48();
        if which.is_empty() {
            return client;
        }
        let net48 = IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into());
        match self.check_key(which, policy, LimitKey::Ip(net48)).await {
            Admission::Allowed(_) => client,
            refused => refused,
        }
    }

    async fn check_key(
        &self,
        which: &[usize],
        policy: Option<&axum::http::HeaderValue>,
        key: LimitKey,
    ) -> Admission {
        let verdict = self.limiter.check(which, &key).await;
        if verdict.unavailable {
            return Admission::Unavailable;
        }
        let policies = &self.limiter.policies;
        let headers = RateHeaders::new(policy, policies, &verdict);
        if verdict.refused {
            return Admission::Refused {
                retry_after: verdict.retry_after(policies),
                policies: verdict
                    .decisions
                    .iter()
                    .filter(|(_, d)| !d.allowed)
                    .map(|(i, _)| policies[*i].name.clone())
                    .collect(),
                headers,
            };
        }
        Admission::Allowed(headers)
    }

    /// How each route is classed (exempt, auth, webhook).
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }
}

/// What the edge decided about one request: a value, which only the middleware (or a handler
/// that wants its own answer) turns into a response.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; put these headers on the answer.
    Allowed(RateHeaders),
    /// Over budget: retry after this many seconds.
    Refused {
        /// Seconds until every refusing enforced policy admits again.
        retry_after: u64,
        /// The names of the refusing policies.
        policies: Vec<String>,
        /// The rate-limit headers of the refusal.
        headers: RateHeaders,
    },
    /// The shared limiter cannot be reached and the edge fails closed.
    Unavailable,
}

impl Admission {
    /// The standard answer: nothing for `Allowed`, a 429 or 503 problem with `Retry-After`.
    // The error is the answer itself, sent as it is; nothing propagates it further.
    #[allow(clippy::result_large_err)]
    pub fn into_response(self) -> Result<RateHeaders, Response> {
        match self {
            Self::Allowed(headers) => Ok(headers),
            Self::Refused {
                retry_after,
                policies,
                headers,
            } => Err(headers::refused(headers, &policies, retry_after)),
            Self::Unavailable => Err(headers::retry_later(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "Rate limits cannot be checked right now; retry shortly.",
                1,
            )),
        }
    }
}
