//! The MFA step of a login (`mfa_challenges`): the MFA token names a challenge that completes one
//! login only, and only while the account's password is the one the first step checked.

use sqlx::AnyConnection;

use crate::{
    db::types::{new_id, now_micros},
    error::AppError,
    state::AppState,
};

use super::opaque;

/// Opens the MFA step of a login for `user_id`, whose password hash is `password_hash`; returns
/// the challenge id the MFA token carries.
pub async fn open(
    conn: &mut AnyConnection,
    user_id: &str,
    password_hash: &str,
    ttl_seconds: u64,
) -> Result<String, AppError> {
    let id = new_id();
    let now = now_micros();
    sqlx::query(
        "INSERT INTO mfa_challenges (id, user_id, password_fpr, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(id.clone())
    .bind(user_id.to_owned())
    .bind(opaque::sha256_hex(password_hash))
    .bind(now + ttl_seconds as i64 * 1_000_000)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Whether challenge `id` of `user_id` is unused, unexpired and still for this password.
pub async fn is_open(
    conn: &mut AnyConnection,
    id: &str,
    user_id: &str,
    fingerprint: &str,
) -> Result<bool, AppError> {
    let row = sqlx::query(
        "SELECT 1 AS open FROM mfa_challenges WHERE id = $1 AND user_id = $2 AND used_at IS NULL \
         AND expires_at > $3 AND password_fpr = $4",
    )
    .bind(id.to_owned())
    .bind(user_id.to_owned())
    .bind(now_micros())
    .bind(fingerprint.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Uses challenge `id` if it is still open (see [`is_open`]); returns whether it was.
pub async fn use_once(
    conn: &mut AnyConnection,
    id: &str,
    user_id: &str,
    fingerprint: &str,
) -> Result<bool, AppError> {
    let now = now_micros();
    let done = sqlx::query(
        "UPDATE mfa_challenges SET used_at = $1 WHERE id = $2 AND user_id = $3 \
         AND used_at IS NULL AND expires_at > $1 AND password_fpr = $4",
    )
    .bind(now)
    .bind(id.to_owned())
    .bind(user_id.to_owned())
    .bind(fingerprint.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the challenges that have expired; returns how many.
pub async fn prune(state: &AppState) -> Result<u64, AppError> {
    let done = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
        .bind(now_micros())
        .execute(state.db.pool())
        .await?;
    Ok(done.rows_affected())
}
