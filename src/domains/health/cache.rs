//! One dependency check shared by every caller for a short while: concurrent probes wait for the
//! check in flight instead of each running their own round trips.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::state::AppState;

use super::{service, types::Health};

/// The last check and when it was made. Kept in the state by the health domain.
#[derive(Debug)]
pub struct HealthCache {
    ttl: Duration,
    last: Mutex<Option<(Instant, Health)>>,
}

impl HealthCache {
    /// A cache that reuses a check for `ttl` (zero: never).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The health of the service: the last check if it is fresh, else a new one.
    pub async fn health(&self, state: &AppState) -> Health {
        let mut last = self.last.lock().await;
        if let Some((at, health)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return Health {
                    uptime_s: state.started.elapsed().as_secs(),
                    ..health.clone()
                };
            }
        }
        let health = service::health(state).await;
        if !self.ttl.is_zero() {
            *last = Some((Instant::now(), health.clone()));
        }
        health
    }
}
