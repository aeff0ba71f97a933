//! The checks behind `/ready`, `/api/health` and `/api/status`.

use std::{collections::BTreeMap, time::Duration};

use chrono::{SecondsFormat, Utc};

use crate::state::AppState;

use super::types::{Check, Health, Status, Verdict};

/// How long a dependency may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

fn check(result: Result<Duration, String>) -> Check {
    match result {
        Ok(latency) => Check {
            status: "up",
            latency_ms: round_ms(latency),
            error: None,
        },
        Err(error) => {
            tracing::warn!(%error, "dependency check failed");
            Check {
                status: "down",
                latency_ms: round_ms(CHECK_TIMEOUT),
                error: Some("unavailable".into()),
            }
        }
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// The database answers a read and, after a storage fault (a write refused by a full disk or
/// a read-only file), accepts a probe write again: until then it counts as down, so `/ready`
/// and `/api/health` do not call a database healthy while its writes fail.
async fn database(state: &AppState) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    state.db.ping(CHECK_TIMEOUT).await?;
    if state.db.faults().is_failing() {
        state
            .db
            .probe_write(CHECK_TIMEOUT)
            .await
            .map_err(|e| format!("writes are failing: {e}"))?;
    }
    Ok(started.elapsed())
}

/// Checks every dependency concurrently and gives the verdict.
pub async fn health(state: &AppState) -> Health {
    let database = database(state);
    let redis = async {
        match &state.kv {
            Some(kv) => Some(kv.ping(CHECK_TIMEOUT).await),
            None => None,
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let mut checks = BTreeMap::new();
    let database_up = database.is_ok();
    checks.insert("database", check(database));
    let mut redis_up = true;
    if let Some(redis) = redis {
        redis_up = redis.is_ok();
        checks.insert("redis", check(redis));
    }
    let status = match (database_up, redis_up) {
        (false, _) => Verdict::Unhealthy,
        (true, false) => Verdict::Degraded,
        (true, true) => Verdict::Healthy,
    };
    Health {
        status,
        version: state.config.build.version.clone(),
        uptime_s: state.started.elapsed().as_secs(),
        checks,
    }
}

/// What this process is and which subsystems it really runs.
pub fn status(state: &AppState) -> Status {
    let config = &state.config;
    // Only what this process was configured with and really runs: the platform's own, then
    // each registered domain's (structural parts that are always on are not listed).
    let mut features = BTreeMap::from([
        ("cors", !config.cors_origins.is_empty()),
        ("hsts", config.is_https()),
        ("jobs", state.jobs.is_running()),
        ("mail", state.mail.is_running()),
        ("redis", state.kv.is_some()),
        ("web_app", state.web_app),
    ]);
    for report in &state.features {
        features.extend(report(state));
    }
    Status {
        service: "autorisen",
        version: config.build.version.clone(),
        git_sha: config.build.git_sha.clone(),
        build_time: config.build.build_time.clone(),
        environment: config.env.as_str(),
        server_time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        uptime_s: state.started.elapsed().as_secs(),
        database: state.db.backend(),
        mail_transport: state.mail.transport_kind(),
        features,
        log_lines_dropped: crate::telemetry::dropped_lines(),
    }
}
