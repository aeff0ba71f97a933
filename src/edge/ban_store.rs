//! Where bans are shared between instances: a Redis hash when Redis is configured, else the
//! `edge_bans` table.

use std::{net::IpAddr, time::Duration};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{db::Db, kv::Kv};

/// One client's ban record (kept after the ban ends, to escalate the next one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The banned address.
    pub ip: IpAddr,
    /// Why, in words an operator understands.
    pub reason: String,
    /// 1 for a first ban, 2 for a second within the strike memory, …
    pub level: i64,
    /// When the ban began (Unix microseconds).
    pub banned_at: i64,
    /// When it ends (Unix microseconds); in the past once lifted or over.
    pub until: i64,
}

/// The shared store of ban records.
#[derive(Debug, Clone)]
pub enum BanStore {
    /// A hash `<prefix>bans` of address → JSON record.
    Redis {
        /// The connection (boxed: it is much larger than a pool handle).
        kv: Box<Kv>,
        /// The hash's key.
        key: String,
        /// How long the hash outlives its last write (the strike memory).
        ttl: Duration,
    },
    /// The `edge_bans` table.
    Db(Db),
}

const TIMEOUT: Duration = Duration::from_secs(2);

impl BanStore {
    /// The store the settings call for: the Redis hash `<prefix>bans` when `kv` is configured,
    /// else the `edge_bans` table.
    pub fn for_settings(settings: &super::settings::EdgeSettings, kv: Option<Kv>, db: Db) -> Self {
        match kv {
            Some(kv) => Self::Redis {
                kv: Box::new(kv),
                key: format!("{}bans", settings.redis_prefix),
                ttl: settings.abuse.strike_memory,
            },
            None => Self::Db(db),
        }
    }

    /// The record of `ip`, if any.
    pub async fn get(&self, ip: IpAddr) -> anyhow::Result<Option<Ban>> {
        match self {
            Self::Redis { kv, key, .. } => {
                let mut conn = kv.connection(TIMEOUT).await?;
                let raw: Option<String> = conn.hget(key, ip.to_string()).await?;
                Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
            }
            Self::Db(db) => {
                let row = sqlx::query(
                    "SELECT ip, reason, level, banned_at, until_at FROM edge_bans WHERE ip = $1",
                )
                .bind(ip.to_string())
                .fetch_optional(db.pool())
                .await?;
                Ok(row.and_then(|r| from_row(&r)))
            }
        }
    }

    /// Writes `ban`, replacing the record of its address.
    pub async fn put(&self, ban: &Ban) -> anyhow::Result<()> {
        match self {
            Self::Redis { kv, key, ttl } => {
                let mut conn = kv.connection(TIMEOUT).await?;
                let _: () = redis::pipe()
                    .hset(key, ban.ip.to_string(), serde_json::to_string(ban)?)
                    .pexpire(key, ttl.as_millis() as i64)
                    .query_async(&mut conn)
                    .await?;
            }
            Self::Db(db) => {
                sqlx::query(
                    "INSERT INTO edge_bans (ip, reason, level, banned_at, until_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ip) DO UPDATE SET \
                     reason = excluded.reason, level = excluded.level, banned_at = excluded.banned_at, \
                     until_at = excluded.until_at, updated_at = excluded.updated_at",
                )
                .bind(ban.ip.to_string())
                .bind(ban.reason.clone())
                .bind(ban.level)
                .bind(ban.banned_at)
                .bind(ban.until)
                .bind(crate::db::types::now_micros())
                .execute(db.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// Every ban still running at `now` (Unix microseconds).
    pub async fn active(&self, now: i64) -> anyhow::Result<Vec<Ban>> {
        let mut bans: Vec<Ban> = match self {
            Self::Redis { kv, key, .. } => {
                let mut conn = kv.connection(TIMEOUT).await?;
                let all: Vec<(String, String)> = conn.hgetall(key).await?;
                all.iter()
                    .filter_map(|(_, v)| serde_json::from_str(v).ok())
                    .collect()
            }
            Self::Db(db) => sqlx::query(
                "SELECT ip, reason, level, banned_at, until_at FROM edge_bans WHERE until_at > $1",
            )
            .bind(now)
            .fetch_all(db.pool())
            .await?
            .iter()
            .filter_map(from_row)
            .collect(),
        };
        bans.retain(|b| b.until > now);
        bans.sort_by_key(|b| std::cmp::Reverse(b.until));
        Ok(bans)
    }
}

impl BanStore {
    /// Deletes the records that no longer matter at `now`: bans that are over and began longer
    /// than `memory` (µs) ago, so they can no longer escalate the next one. Returns how many.
    pub async fn prune(&self, now: i64, memory: i64) -> anyhow::Result<u64> {
        let dead = |b: &Ban| b.until <= now && b.banned_at + memory <= now;
        match self {
            Self::Redis { kv, key, .. } => {
                let mut conn = kv.connection(TIMEOUT).await?;
                let all: Vec<(String, String)> = conn.hgetall(key).await?;
                let stale: Vec<&String> = all
                    .iter()
                    .filter(|(_, v)| serde_json::from_str::<Ban>(v).map_or(true, |b| dead(&b)))
                    .map(|(field, _)| field)
                    .collect();
                if stale.is_empty() {
                    return Ok(0);
                }
                let removed: u64 = conn.hdel(key, stale).await?;
                Ok(removed)
            }
            Self::Db(db) => Ok(sqlx::query(
                "DELETE FROM edge_bans WHERE until_at <= $1 AND banned_at <= $2",
            )
            .bind(now)
            .bind(now - memory)
            .execute(db.pool())
            .await?
            .rows_affected()),
        }
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Option<Ban> {
    Some(Ban {
        ip: r.get::<String, _>("ip").parse().ok()?,
        reason: r.get("reason"),
        level: r.get("level"),
        banned_at: r.get("banned_at"),
        until: r.get("until_at"),
    })
}
