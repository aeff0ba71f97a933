//! Per-account lockout (ASVS 6.3): progressive delay after 5 consecutive failures, a 15-minute
//! lock after 10 failures within 15 minutes, never more than 100 failures an hour. State lives in
//! the database so every instance enforces the same lock. A lock always ends by itself.

use std::{sync::LazyLock, time::Duration};

use sqlx::{AnyConnection, Row};

use crate::{
    db::types::{from_micros, new_id, now_micros},
    domains::{
        audit::{self, Event, RequestMeta},
        users::service::{self as users, joined},
    },
    error::AppError,
    mail,
};

/// Failures of the password step.
pub const PASSWORD: &str = "password";
/// Failures of a TOTP or recovery code.
pub const CODE: &str = "code";

const DELAY_AFTER: i64 = 5;
const LOCK_AFTER: i64 = 10;
const WINDOW_MICROS: i64 = 15 * 60 * 1_000_000;
const LOCK_MICROS: i64 = 15 * 60 * 1_000_000;
const HOUR_MICROS: i64 = 3600 * 1_000_000;
const HOURLY_MAX: i64 = 100;

fn locked(until: i64, now: i64) -> AppError {
    AppError::TooManyRequests {
        retry_after: ((until - now) / 1_000_000 + 1).max(1) as u64,
        detail: "This account is temporarily locked after repeated failed attempts; \
                 try again later or reset the password."
            .into(),
    }
}

/// Refuses (429 with `Retry-After`) while the account is locked or over its hourly budget.
pub async fn ensure_open(
    conn: &mut AnyConnection,
    user_id: &str,
    locked_until: Option<i64>,
) -> Result<(), AppError> {
    let now = now_micros();
    if let Some(until) = locked_until.filter(|u| *u > now) {
        return Err(locked(until, now));
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM auth_failures WHERE user_id = $1 AND at > $2",
    )
    .bind(user_id.to_owned())
    .bind(now - HOUR_MICROS)
    .fetch_one(conn)
    .await?;
    let n: i64 = row.try_get("n")?;
    if n >= HOURLY_MAX {
        let oldest: Option<i64> = row.try_get("oldest")?;
        return Err(locked(oldest.unwrap_or(now) + HOUR_MICROS, now));
    }
    Ok(())
}

/// The consecutive failures of one kind within the window: those since the account's reset point
/// (a success or a lock moves it), read with the account in one query; the users domain gives
/// the join and the column ([`joined`]).
static CONSECUTIVE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COUNT(*) AS n FROM auth_failures f {join} \
         WHERE f.user_id = $1 AND f.kind = $2 AND f.at > {reset_at} AND f.at > $3",
        join = joined::join_on("f.user_id"),
        reset_at = joined::FAILURES_RESET_AT,
    )
});

/// Records a failed attempt of `kind`; locks the account (and queues the lock email) at the
/// threshold. Returns how long to hold the answer back (the progressive delay).
pub async fn record_failure(
    conn: &mut AnyConnection,
    meta: &RequestMeta,
    user_id: &str,
    email: &str,
    kind: &str,
) -> Result<Duration, AppError> {
    let now = now_micros();
    sqlx::query("INSERT INTO auth_failures (id, user_id, kind, at) VALUES ($1, $2, $3, $4)")
        .bind(new_id())
        .bind(user_id.to_owned())
        .bind(kind.to_owned())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let consecutive: i64 = sqlx::query(&CONSECUTIVE_SQL)
        .bind(user_id.to_owned())
        .bind(kind.to_owned())
        .bind(now - WINDOW_MICROS)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    if consecutive >= LOCK_AFTER {
        let until = now + LOCK_MICROS;
        // Restarting the count makes the lock temporary: after it, the full allowance applies again.
        users::lock_until(&mut *conn, user_id, until, now).await?;
        let event = Event {
            actor: None,
            action: "account_locked",
            target: Some(user_id),
            outcome: audit::Outcome::Success,
            details: serde_json::json!({"kind": kind, "failures": consecutive, "until": from_micros(until)}),
        };
        audit::record(conn, meta, event).await?;
        let email = mail::Email {
            to: email.to_owned(),
            template: super::emails::Template::AccountLocked {
                until: from_micros(until),
            },
        };
        mail::enqueue(conn, &email).await?;
        return Ok(Duration::ZERO);
    }
    Ok(delay_for(consecutive))
}

/// No delay for the first 5 failures, then 100 ms doubling up to 2 s.
fn delay_for(consecutive: i64) -> Duration {
    if consecutive <= DELAY_AFTER {
        return Duration::ZERO;
    }
    let exp = (consecutive - DELAY_AFTER - 1).min(5) as u32;
    Duration::from_millis((100u64 << exp).min(2000))
}

/// A success of `kind`: its consecutive count restarts and any lock ends; old rows are pruned.
pub async fn record_success(conn: &mut AnyConnection, user_id: &str) -> Result<(), AppError> {
    let now = now_micros();
    users::reset_failures(&mut *conn, user_id, now).await?;
    sqlx::query("DELETE FROM auth_failures WHERE user_id = $1 AND at < $2")
        .bind(user_id.to_owned())
        .bind(now - HOUR_MICROS)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_starts_after_five_failures_and_grows() {
        assert_eq!(delay_for(5), Duration::ZERO);
        assert_eq!(delay_for(6), Duration::from_millis(100));
        assert_eq!(delay_for(7), Duration::from_millis(200));
        assert!(delay_for(50) <= Duration::from_secs(2));
    }
}
