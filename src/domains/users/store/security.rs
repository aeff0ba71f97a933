//! The SQL of an account's second factor and lock: the MFA columns, `locked_until` and
//! `failures_reset_at` of `users`.

use sqlx::{Any, Executor, Row};

/// The MFA columns of an account, and its lock.
#[derive(Debug, Clone)]
pub struct MfaState {
    /// The confirmed TOTP secret (base32), while MFA is on.
    pub secret: Option<String>,
    /// The secret from setup, until a code from it is confirmed.
    pub pending: Option<String>,
    /// Locked until this time (µs), if locked.
    pub locked_until: Option<i64>,
}

/// The MFA state of the account with `id`; an unknown id is `RowNotFound`.
pub async fn mfa_state<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<MfaState, sqlx::Error> {
    let row =
        sqlx::query("SELECT mfa_secret, mfa_pending_secret, locked_until FROM users WHERE id = $1")
            .bind(id.to_owned())
            .fetch_one(db)
            .await?;
    Ok(MfaState {
        secret: row.try_get("mfa_secret")?,
        pending: row.try_get("mfa_pending_secret")?,
        locked_until: row.try_get("locked_until")?,
    })
}

/// Records `step` as the last accepted TOTP step, only if it is later than the stored one;
/// returns whether it was (atomic, so two instances cannot both accept one code).
pub async fn claim_mfa_step<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET mfa_last_step = $1 WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)")
        .bind(step)
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a secret from setup, pending until confirmed.
pub async fn set_mfa_pending<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET mfa_pending_secret = $1 WHERE id = $2")
        .bind(secret.to_owned())
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Makes `pending` the MFA secret and turns MFA on, only if it is still off and `pending` is
/// still the pending secret; returns whether it did.
pub async fn enable_mfa<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    pending: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL, mfa_enabled = TRUE WHERE id = $1 AND mfa_enabled = FALSE AND mfa_pending_secret = $2")
        .bind(id.to_owned())
        .bind(pending.to_owned())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Turns MFA off and forgets both secrets.
pub async fn disable_mfa<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET mfa_enabled = FALSE, mfa_secret = NULL, mfa_pending_secret = NULL WHERE id = $1")
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Locks the account until `until` and restarts its failure count at `reset_at`.
pub async fn lock_until<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    until: i64,
    reset_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET locked_until = $1, failures_reset_at = $2 WHERE id = $3")
        .bind(until)
        .bind(reset_at)
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Restarts the failure count at `at` and ends any lock.
pub async fn reset_failures<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET failures_reset_at = $1, locked_until = NULL WHERE id = $2")
        .bind(at)
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}
