//! Temporary bans with escalating durations, checked locally on every request and shared
//! through the [`BanStore`] (each instance reloads the active list every `BAN_SYNC_SECONDS`).

use std::net::IpAddr;

use dashmap::DashMap;

use crate::db::types::now_micros;

use super::{
    ban_store::{Ban, BanStore},
    limiter::client_network,
    settings::AbuseSettings,
};

/// The bans this instance knows about, and the shared store behind them.
#[derive(Debug)]
pub struct Bans {
    /// Address → end of its ban (Unix microseconds).
    local: DashMap<IpAddr, i64>,
    store: BanStore,
    settings: AbuseSettings,
}

impl Bans {
    /// Bans over `store`.
    pub fn new(store: BanStore, settings: AbuseSettings) -> Self {
        Self {
            local: DashMap::new(),
            store,
            settings,
        }
    }

    /// Seconds left on `ip`'s ban, if it is banned. No I/O: this runs on every request.
    pub fn retry_after(&self, ip: IpAddr) -> Option<u64> {
        let ip = client_network(ip);
        let until = *self.local.get(&ip)?;
        let left = until - now_micros();
        (left > 0).then(|| (left as u64).div_ceil(1_000_000))
    }

    /// Bans `ip` for the duration its strike level calls for; a running ban is left as it is.
    pub async fn ban(&self, ip: IpAddr, reason: &str) -> Ban {
        let ip = client_network(ip);
        let now = now_micros();
        let previous = self.store.get(ip).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ban store unavailable; banning on this instance only");
            None
        });
        if let Some(running) = previous.as_ref().filter(|b| b.until > now) {
            self.local.insert(ip, running.until);
            return running.clone();
        }
        let memory = self.settings.strike_memory.as_micros() as i64;
        let level = previous
            .filter(|b| b.banned_at + memory > now)
            .map_or(1, |b| b.level + 1);
        let index = (level as usize - 1).min(self.settings.durations.len() - 1);
        let ban = Ban {
            ip,
            reason: reason.to_owned(),
            level,
            banned_at: now,
            until: now + self.settings.durations[index].as_micros() as i64,
        };
        if let Err(e) = self.store.put(&ban).await {
            tracing::warn!(error = %e, "ban store unavailable; banning on this instance only");
        }
        self.local.insert(ip, ban.until);
        tracing::warn!(%ip, reason, level, seconds = self.settings.durations[index].as_secs(), "client banned");
        ban
    }

    /// Ends `ip`'s ban now (its strike level is kept); false when it was not banned.
    pub async fn lift(&self, ip: IpAddr) -> anyhow::Result<bool> {
        let ip = client_network(ip);
        let now = now_micros();
        self.local.remove(&ip);
        let Some(mut ban) = self.store.get(ip).await?.filter(|b| b.until > now) else {
            return Ok(false);
        };
        ban.until = now;
        self.store.put(&ban).await?;
        tracing::info!(%ip, "ban lifted");
        Ok(true)
    }

    /// Deletes the ban records that can no longer escalate a ban (over, and older than the
    /// strike memory); returns how many went.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let memory = i64::try_from(self.settings.strike_memory.as_micros()).unwrap_or(i64::MAX);
        self.store.prune(now_micros(), memory).await
    }

    /// Every running ban, from the shared store.
    pub async fn list(&self) -> anyhow::Result<Vec<Ban>> {
        self.store.active(now_micros()).await
    }

    /// Replaces the local view with the store's active bans (bans made or lifted elsewhere).
    pub async fn sync(&self) -> anyhow::Result<()> {
        let active = self.store.active(now_micros()).await?;
        self.local
            .retain(|ip, _| active.iter().any(|b| b.ip == *ip));
        for ban in active {
            self.local.insert(ban.ip, ban.until);
        }
        Ok(())
    }
}
