//! Reading the edge's counters and bans for operators.

use std::{net::IpAddr, sync::atomic::Ordering::Relaxed};

use chrono::SecondsFormat;

use crate::{
    db::types::from_micros,
    edge::{ban_store::Ban, shed::Reason},
    error::AppError,
    http::validate::Validator,
    state::AppState,
};

use super::types::{BanView, KeyCount, NewBan, PolicyReport, RateLimitReport, ShedReport, REASON};

/// How many keys each policy reports.
const TOP_KEYS: usize = 10;

/// Every policy with its counts since start.
pub fn rate_limits(state: &AppState) -> RateLimitReport {
    let limiter = &state.edge.limiter;
    let policies = limiter
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let counts = &limiter.stats.policies[i];
            PolicyReport {
                name: p.name.clone(),
                class: p.class,
                mode: p.mode,
                limit: p.quota.limit,
                window_seconds: p.quota.window_secs,
                allowed: counts.allowed.load(Relaxed),
                refused: counts.refused.load(Relaxed),
                would_refuse: counts.would_refuse.load(Relaxed),
                top_keys: limiter
                    .stats
                    .top_keys(i, TOP_KEYS)
                    .into_iter()
                    .map(|(key, refusals)| KeyCount { key, refusals })
                    .collect(),
            }
        })
        .collect();
    RateLimitReport {
        backend: limiter.backend(),
        backend_errors: limiter.stats.backend_errors.load(Relaxed),
        redis_circuit: limiter
            .redis_circuit_open()
            .map(|open| if open { "open" } else { "closed" }),
        redis_circuit_trips: limiter.redis_circuit_trips(),
        shed: ShedReport {
            instance_full: state.edge.shed.total(Reason::InstanceFull),
            database_queue: state.edge.shed.total(Reason::DatabaseQueue),
            database_down: state.edge.shed.total(Reason::DatabaseDown),
        },
        policies,
    }
}

/// A ban as operators see it.
pub fn view(ban: &Ban) -> BanView {
    let time = |micros| from_micros(micros).to_rfc3339_opts(SecondsFormat::Secs, true);
    BanView {
        ip: ban.ip.to_string(),
        reason: ban.reason.clone(),
        level: ban.level,
        banned_at: time(ban.banned_at),
        until: time(ban.until),
    }
}

/// Every running ban.
pub async fn bans(state: &AppState) -> Result<Vec<BanView>, AppError> {
    let bans = state.edge.bans.list().await.map_err(unavailable)?;
    Ok(bans.iter().map(view).collect())
}

/// Bans an address by hand, for the duration its strike level calls for.
pub async fn ban(state: &AppState, caller: &str, new: NewBan) -> Result<BanView, AppError> {
    let mut v = Validator::new();
    let ip = v.ip("ip", &new.ip);
    let reason = match REASON.check(&new.reason) {
        Ok(reason) => reason,
        Err(e) => {
            v.error("reason", e);
            String::new()
        }
    };
    v.finish()?;
    let ip = ip.expect("validated");
    if caller.parse::<IpAddr>().is_ok_and(|caller| caller == ip) {
        return Err(AppError::Conflict(
            "This is the address of your own request: banning it would lock you out.".into(),
        ));
    }
    let ban = state
        .edge
        .bans
        .ban(ip, &format!("by an operator: {reason}"))
        .await;
    Ok(view(&ban))
}

/// Lifts the ban of `ip`.
pub async fn lift(state: &AppState, ip: &str) -> Result<(), AppError> {
    // What is not an address is not banned either.
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return Err(AppError::NotFound("This address is not banned.".into()));
    };
    let lifted = state.edge.bans.lift(ip).await.map_err(unavailable)?;
    if lifted {
        Ok(())
    } else {
        Err(AppError::NotFound("This address is not banned.".into()))
    }
}

fn unavailable(e: anyhow::Error) -> AppError {
    AppError::Unavailable(format!("ban store: {e}"))
}
