//! Per-account lockout (ASVS 6.3): progressive delay after 5 consecutive failures, a 15-minute
//! lock after 10 failures within 15 minutes, never more than 100 failures an hour. State lives in
//! the database so every instance enforces the same lock. A lock always ends by itself.
//!
//! Each guess is claimed before it is checked ([`claim`]): one conditional UPDATE of the
//! subject's row in `auth_guards` grants it only while fewer than 10 guesses were claimed in the
//! window and no lock runs, so at most 10 passwords or codes are ever evaluated per lock period,
//! however many arrive at once, on however many instances, whatever the rate-limit mode. The
//! subject of a password is the login identifier as typed (lower-cased), whether or not an
//! account has it: an unknown email meets the same delays and the same lock answer as a real
//! one, so the answers do not tell which accounts exist.

use std::time::Duration;

use sqlx::{AnyConnection, Row};

use crate::{
    db::types::{from_micros, new_id, now_micros},
    domains::{
        audit::{self, Event, RequestMeta},
        users::service as users,
    },
    error::AppError,
    mail,
    state::AppState,
};

use super::guards;

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

/// The answer while a subject is locked (the same for real and unknown accounts).
pub fn locked(until: i64, now: i64) -> AppError {
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

/// The subject of a password guess: the login identifier as typed, lower-cased.
pub fn password_subject(email: &str) -> String {
    format!("email:{}", email.to_lowercase())
}

/// The subject of an MFA code guess: the account.
pub fn code_subject(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// A guess granted by [`claim`]: its number in the window (1 to 10).
#[derive(Debug, Clone, Copy)]
pub struct Claim(pub i64);

/// Claims one guess of `kind` for `subject`, committed before the guess is checked; refuses with
/// the lock answer (429) while the subject is locked or its 10 guesses are claimed.
pub async fn claim(state: &AppState, subject: &str, kind: &str) -> Result<Claim, AppError> {
    let now = now_micros();
    let mut conn = state.db.pool().acquire().await?;
    if let Some(n) = guards::claim_at(
        &mut conn,
        now,
        subject,
        kind,
        LOCK_AFTER,
        WINDOW_MICROS,
        None,
    )
    .await?
    {
        return Ok(Claim(n));
    }
    let until: Option<i64> =
        sqlx::query("SELECT locked_until FROM auth_guards WHERE subject = $1 AND kind = $2")
            .bind(subject.to_owned())
            .bind(kind.to_owned())
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get("locked_until"))
            .transpose()?
            .flatten();
    // No lock yet: every guess of the window is claimed and still being checked; the last of
    // them decides within a few seconds.
    Err(locked(
        until.filter(|u| *u > now).unwrap_or(now + 2_000_000),
        now,
    ))
}

/// Records that the guess `claim` of `kind` for `subject` was wrong, in `conn` (the caller's
/// transaction). The tenth wrong guess of a window locks the subject for 15 minutes and, for a
/// real `account` (id, email), locks the account, audits it and queues the lock email. Returns
/// how long to hold the answer back (the progressive delay), the same for unknown subjects.
pub async fn record_failure(
    conn: &mut AnyConnection,
    meta: &RequestMeta,
    subject: &str,
    kind: &str,
    claim: Claim,
    account: Option<(&str, &str)>,
) -> Result<Duration, AppError> {
    let now = now_micros();
    if let Some((user_id, _)) = account {
        sqlx::query("INSERT INTO auth_failures (id, user_id, kind, at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(user_id.to_owned())
            .bind(kind.to_owned())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    if claim.0 < LOCK_AFTER {
        return Ok(delay_for(claim.0));
    }
    let until = now + LOCK_MICROS;
    // Restarting the count makes the lock temporary: after it, the full allowance applies again.
    sqlx::query(
        "UPDATE auth_guards SET locked_until = $1, claims = 0, window_start = $2, updated_at = $2 \
         WHERE subject = $3 AND kind = $4",
    )
    .bind(until)
    .bind(now)
    .bind(subject.to_owned())
    .bind(kind.to_owned())
    .execute(&mut *conn)
    .await?;
    let Some((user_id, email)) = account else {
        return Ok(Duration::ZERO);
    };
    users::lock_until(&mut *conn, user_id, until, now).await?;
    let event = Event {
        actor: None,
        action: "account_locked",
        target: Some(user_id),
        outcome: audit::Outcome::Success,
        details: serde_json::json!({"kind": kind, "failures": claim.0, "until": from_micros(until)}),
    };
    audit::record(conn, meta, event).await?;
    if !super::emails::allowed(conn, email, "account_locked").await? {
        return Ok(Duration::ZERO);
    }
    let email = mail::Email {
        to: email.to_owned(),
        template: super::emails::Template::AccountLocked {
            until: from_micros(until),
        },
    };
    mail::enqueue(conn, &email).await?;
    Ok(Duration::ZERO)
}

/// No delay for the first 5 failures, then 100 ms doubling up to 2 s.
fn delay_for(consecutive: i64) -> Duration {
    if consecutive <= DELAY_AFTER {
        return Duration::ZERO;
    }
    let exp = (consecutive - DELAY_AFTER - 1).min(5) as u32;
    Duration::from_millis((100u64 << exp).min(2000))
}

/// A right guess of `kind` for `subject`: its count restarts and any lock ends; old failure
/// rows of `user_id` are pruned.
pub async fn record_success(
    conn: &mut AnyConnection,
    subject: &str,
    kind: &str,
    user_id: &str,
) -> Result<(), AppError> {
    let now = now_micros();
    sqlx::query(
        "UPDATE auth_guards SET claims = 0, window_start = $1, locked_until = NULL, updated_at = $1 \
         WHERE subject = $2 AND kind = $3",
    )
    .bind(now)
    .bind(subject.to_owned())
    .bind(kind.to_owned())
    .execute(&mut *conn)
    .await?;
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
