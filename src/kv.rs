//! Redis, when `REDIS_URL` is set: state shared by every instance (limits, bans, revocations).
//!
//! Outages are met by a circuit breaker: the first failed call opens it, and while it is open
//! every call fails at once (callers fall back, e.g. to per-instance limits) instead of waiting
//! out its timeout; a background probe pings Redis every [`PROBE_EVERY`] and closes the circuit
//! on the first answer. The connection itself reconnects with a short, capped backoff (about a
//! second between attempts), so service resumes within seconds of Redis returning.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Client,
};
use tokio::sync::OnceCell;

/// How often the probe pings Redis while the circuit is open.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A lazily connected, auto-reconnecting Redis connection behind a circuit breaker. Cheap to
/// clone.
#[derive(Clone)]
pub struct Kv {
    client: Client,
    manager: Arc<OnceCell<ConnectionManager>>,
    breaker: Arc<Breaker>,
}

#[derive(Default)]
struct Breaker {
    open: AtomicBool,
    probing: AtomicBool,
    /// Times the circuit opened since start.
    trips: AtomicU64,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kv")
    }
}

impl Kv {
    /// Prepares a client for `url` without connecting (Redis may come up after the service).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::open(url)?,
            manager: Default::default(),
            breaker: Default::default(),
        })
    }

    /// Whether the circuit is open: Redis failed and has not answered a probe since.
    pub fn is_open(&self) -> bool {
        self.breaker.open.load(Ordering::Relaxed)
    }

    /// Times the circuit opened since start.
    pub fn trips(&self) -> u64 {
        self.breaker.trips.load(Ordering::Relaxed)
    }

    /// A connection, established on first use within `timeout`; fails at once while the circuit
    /// is open, and opens it when the connection cannot be made.
    pub async fn connection(&self, timeout: Duration) -> anyhow::Result<ConnectionManager> {
        self.refuse_while_open()?;
        self.raw_connection(timeout)
            .await
            .inspect_err(|_| self.trip())
    }

    /// Runs `call` on a connection within `timeout`; a failure or a timeout opens the circuit.
    pub async fn run<T, F, Fut>(&self, timeout: Duration, call: F) -> anyhow::Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.refuse_while_open()?;
        let attempt = async {
            let conn = self.raw_connection(timeout).await?;
            anyhow::Ok(call(conn).await?)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.trip();
                Err(e)
            }
            Err(_) => {
                self.trip();
                Err(anyhow::anyhow!(
                    "no answer from Redis within {} ms",
                    timeout.as_millis()
                ))
            }
        }
    }

    /// Answers whether Redis responds to `PING` within `timeout` (at once while the circuit is
    /// open: the probe is already asking).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        self.run(timeout, |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(|_| started.elapsed())
        .map_err(|e| e.to_string())
    }

    fn refuse_while_open(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.is_open(),
            "Redis is unreachable (the circuit is open; a probe retries every {} ms)",
            PROBE_EVERY.as_millis()
        );
        Ok(())
    }

    async fn raw_connection(&self, timeout: Duration) -> anyhow::Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            // The retry delay is min(1 s × 2^n, 1 s) plus jitter: about a second between
            // attempts however long the outage (the crate's default grows to a minute).
            .set_factor(2)
            .set_max_delay(1000)
            .set_number_of_retries(5)
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(2));
        let manager = tokio::time::timeout(
            timeout,
            self.manager.get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), config)
            }),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("no connection to Redis within {} ms", timeout.as_millis())
        })??;
        Ok(manager.clone())
    }

    /// Opens the circuit and starts the probe (one per connection) that closes it again.
    fn trip(&self) {
        if !self.breaker.open.swap(true, Ordering::Relaxed) {
            self.breaker.trips.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("Redis failed: calls fail fast until a probe gets an answer");
        }
        if self.breaker.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.breaker.probing.store(false, Ordering::Relaxed);
            return;
        };
        let kv = self.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
                    let mut conn = kv.raw_connection(PROBE_TIMEOUT).await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await?;
                    anyhow::Ok(())
                })
                .await;
                if matches!(answered, Ok(Ok(()))) {
                    kv.breaker.open.store(false, Ordering::Relaxed);
                    kv.breaker.probing.store(false, Ordering::Relaxed);
                    tracing::info!("Redis answers again: the circuit is closed");
                    return;
                }
            }
        });
    }
}
