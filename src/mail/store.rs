//! The SQL of the outbox worker. Claims are conditional updates, so that on PostgreSQL (or on one
//! shared SQLite file) several workers never hold the same message at once.

use sqlx::{AnyPool, Row};

/// A message claimed by this worker until its lease ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The outbox row id.
    pub id: String,
    /// The recipient address.
    pub recipient: String,
    /// The template name.
    pub template: String,
    /// The template parameters as JSON (`None` once cleared).
    pub payload: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A row is claimable when it is pending and due, or when the claim on it has expired.
const CLAIMABLE: &str = "((status = 'pending' AND next_attempt_at <= $1) \
                         OR (status = 'sending' AND locked_until <= $1))";

/// Up to `limit` claimable message ids, oldest due first.
pub async fn due_ids(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let sql =
        format!("SELECT id FROM mail_outbox WHERE {CLAIMABLE} ORDER BY next_attempt_at LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| r.try_get::<String, _>("id")).collect()
}

/// Claims message `id` for `token` until `lease_until`, counting the attempt; `None` when another
/// worker got it first (PostgreSQL re-checks the condition on the row it waited for).
pub async fn claim(
    pool: &AnyPool,
    id: &str,
    token: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let sql = format!(
        "UPDATE mail_outbox SET status = 'sending', claimed_by = $2, locked_until = $3, \
         attempts = attempts + 1 WHERE id = $4 AND {CLAIMABLE} \
         RETURNING recipient, template, payload, attempts"
    );
    let row = sqlx::query(&sql)
        .bind(now)
        .bind(token)
        .bind(lease_until)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Claimed {
            id: id.to_owned(),
            recipient: r.try_get("recipient")?,
            template: r.try_get("template")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
        })
    })
    .transpose()
}

/// Records a delivery and drops the payload (its links hold tokens). False if the claim was lost.
pub async fn mark_sent(
    pool: &AnyPool,
    id: &str,
    token: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = 'sent', sent_at = $1, payload = NULL, last_error = NULL, \
         locked_until = NULL, claimed_by = NULL WHERE id = $2 AND claimed_by = $3",
    )
    .bind(now)
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts the message back in the queue for another attempt at `next_attempt_at`.
pub async fn reschedule(
    pool: &AnyPool,
    id: &str,
    token: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = 'pending', next_attempt_at = $1, last_error = $2, \
         locked_until = NULL, claimed_by = NULL WHERE id = $3 AND claimed_by = $4",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives up on the message for good; the payload is dropped as its tokens are useless now.
pub async fn mark_failed(
    pool: &AnyPool,
    id: &str,
    token: &str,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = 'failed', payload = NULL, last_error = $1, \
         locked_until = NULL, claimed_by = NULL WHERE id = $2 AND claimed_by = $3",
    )
    .bind(error)
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
