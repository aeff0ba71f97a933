//! Redis, when `REDIS_URL` is set: state shared by every instance (limits, bans, revocations).

use std::time::Duration;

use redis::{aio::ConnectionManager, Client};
use tokio::sync::OnceCell;

/// A lazily connected, auto-reconnecting Redis connection. Cheap to clone.
#[derive(Clone)]
pub struct Kv {
    client: Client,
    manager: std::sync::Arc<OnceCell<ConnectionManager>>,
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
        })
    }

    /// A connection, established on first use within `timeout`.
    pub async fn connection(&self, timeout: Duration) -> anyhow::Result<ConnectionManager> {
        let manager = tokio::time::timeout(
            timeout,
            self.manager
                .get_or_try_init(|| ConnectionManager::new(self.client.clone())),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("no connection to Redis within {} ms", timeout.as_millis())
        })??;
        Ok(manager.clone())
    }

    /// Answers whether Redis responds to `PING` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        let attempt = async {
            let mut conn = self.connection(timeout).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}
