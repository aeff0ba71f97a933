//! The SQL of sessions and their refresh tokens.

use std::sync::LazyLock;

use sqlx::{Any, AnyConnection, Executor, Row};

use crate::{
    db::types::{new_id, now_micros},
    domains::{
        audit::RequestMeta,
        users::{service::joined, User},
    },
};

use super::opaque;

/// A session as its owner sees it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The id.
    pub id: String,
    /// When it started (µs).
    pub created_at: i64,
    /// When a refresh token was last used (µs).
    pub last_used_at: i64,
    /// The address it started from.
    pub ip: String,
    /// The user agent it started with.
    pub user_agent: String,
}

/// Starts a session for `user_id`; returns its id and its first refresh token.
pub async fn create(
    conn: &mut AnyConnection,
    user_id: &str,
    meta: &RequestMeta,
    ttl_micros: i64,
    absolute_micros: i64,
) -> Result<(String, String), sqlx::Error> {
    let id = new_id();
    let now = now_micros();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, absolute_expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
    )
    .bind(id.clone())
    .bind(user_id.to_owned())
    .bind(now)
    .bind(now + ttl_micros.min(absolute_micros))
    .bind(now + absolute_micros)
    .bind(meta.ip.clone())
    .bind(meta.user_agent.clone())
    .execute(&mut *conn)
    .await?;
    let token = insert_refresh(conn, &id).await?;
    Ok((id, token))
}

/// Adds a new refresh token to session `sid` and returns it.
pub async fn insert_refresh(conn: &mut AnyConnection, sid: &str) -> Result<String, sqlx::Error> {
    let token = opaque::new_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(opaque::sha256_hex(&token))
    .bind(sid.to_owned())
    .bind(now_micros())
    .execute(conn)
    .await?;
    Ok(token)
}

/// The user and session state behind an access token: ONE indexed query (two primary keys).
#[derive(Debug, Clone)]
pub struct Live {
    /// The user as stored now.
    pub user: User,
    /// When the session was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// When the session's refresh lifetime ends (µs).
    pub expires_at: i64,
}

/// The query of [`live`], built once: it runs on every authenticated request. The session and
/// its user come in one round trip; the user side (join, columns, decoding) is the users
/// domain's read contract, [`joined`].
static LIVE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {user}, s.revoked_at, s.expires_at FROM sessions s {join} \
         WHERE s.id = $1 AND s.user_id = $2",
        user = joined::COLUMNS,
        join = joined::join_on("s.user_id"),
    )
});

/// Looks up session `sid` of user `sub` with its user, for every authenticated request.
pub async fn live<'c>(
    db: impl Executor<'c, Database = Any>,
    sid: &str,
    sub: &str,
) -> Result<Option<Live>, sqlx::Error> {
    let Some(row) = sqlx::query(&LIVE_SQL)
        .bind(sid.to_owned())
        .bind(sub.to_owned())
        .fetch_optional(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Live {
        user: joined::user(&row)?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// A presented refresh token, with its session and user.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The session.
    pub session_id: String,
    /// When this token was rotated (used) already, if it was.
    pub rotated_at: Option<i64>,
    /// Whether the session is revoked.
    pub revoked: bool,
    /// Sliding expiry (µs).
    pub expires_at: i64,
    /// Absolute expiry (µs).
    pub absolute_expires_at: i64,
    /// The user.
    pub user: User,
}

/// The query of [`find_refresh`]: the token, its session and its user in one round trip, the
/// user side through the users domain's read contract, [`joined`].
static REFRESH_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {user}, r.session_id, r.rotated_at, s.revoked_at, s.expires_at, s.absolute_expires_at \
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id {join} \
         WHERE r.token_hash = $1",
        user = joined::COLUMNS,
        join = joined::join_on("s.user_id"),
    )
});

/// Finds the refresh token whose hash is `hash`.
pub async fn find_refresh(
    conn: &mut AnyConnection,
    hash: &str,
) -> Result<Option<Presented>, sqlx::Error> {
    let Some(row) = sqlx::query(&REFRESH_SQL)
        .bind(hash.to_owned())
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(Some(Presented {
        session_id: row.try_get("session_id")?,
        rotated_at: row.try_get("rotated_at")?,
        revoked: revoked_at.is_some(),
        expires_at: row.try_get("expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        user: joined::user(&row)?,
    }))
}

/// Marks a refresh token used; false when another request used it first.
pub async fn mark_rotated(conn: &mut AnyConnection, hash: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL",
    )
    .bind(now_micros())
    .bind(hash.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Slides the session's expiry to `expires_at` and records its use.
pub async fn extend(
    conn: &mut AnyConnection,
    sid: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_used_at = $1, expires_at = $2 WHERE id = $3")
        .bind(now_micros())
        .bind(expires_at)
        .bind(sid.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes session `sid` of `user_id`; false when there is no such live session.
pub async fn revoke(
    conn: &mut AnyConnection,
    sid: &str,
    user_id: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
    )
    .bind(now_micros())
    .bind(reason.to_owned())
    .bind(sid.to_owned())
    .bind(user_id.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live session of `user_id` except `keep`; returns how many.
pub async fn revoke_all(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL AND id <> $4",
    )
    .bind(now_micros())
    .bind(reason.to_owned())
    .bind(user_id.to_owned())
    .bind(keep.unwrap_or_default().to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The live sessions of `user_id`, newest first.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    user_id: &str,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    let now = now_micros();
    let rows = sqlx::query(
        "SELECT id, created_at, last_used_at, ip, user_agent FROM sessions WHERE user_id = $1 \
         AND revoked_at IS NULL AND expires_at > $2 AND absolute_expires_at > $2 ORDER BY created_at DESC, id DESC",
    )
    .bind(user_id.to_owned())
    .bind(now)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionRow {
                id: r.try_get("id")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect()
}
