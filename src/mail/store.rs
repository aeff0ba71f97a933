//! The SQL of the outbox during delivery. Only one attempt at a message runs at a time: the
//! `mail.send` job that carries it is leased by the job runner.

use sqlx::{AnyPool, Row};

/// A message an attempt is delivering.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The recipient address.
    pub recipient: String,
    /// The template name.
    pub template: String,
    /// The template parameters as JSON (`None` once cleared).
    pub payload: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// Starts an attempt at message `id` if it still waits for one (`pending`, or `sending` after an
/// attempt that never finished), counting it; `None` when it is sent, failed or gone.
pub async fn start(pool: &AnyPool, id: &str) -> Result<Option<Delivery>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE mail_outbox SET status = 'sending', attempts = attempts + 1 \
         WHERE id = $1 AND status IN ('pending', 'sending') \
         RETURNING recipient, template, payload, attempts",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Delivery {
            recipient: r.try_get("recipient")?,
            template: r.try_get("template")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
        })
    })
    .transpose()
}

/// The status of message `id`, if it exists.
pub async fn status(pool: &AnyPool, id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT status FROM mail_outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("status")).transpose()
}

/// Records a delivery and drops the payload (its links hold tokens).
pub async fn mark_sent(pool: &AnyPool, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = 'sent', sent_at = $1, payload = NULL, last_error = NULL \
         WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Puts the message back to `pending` after a failed attempt; its job schedules the retry.
pub async fn mark_retry(pool: &AnyPool, id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = 'pending', last_error = $1 \
         WHERE id = $2 AND status = 'sending'",
    )
    .bind(error)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives up on the message for good; the payload is dropped as its tokens are useless now.
pub async fn mark_failed(pool: &AnyPool, id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = 'failed', payload = NULL, last_error = $1 \
         WHERE id = $2 AND status IN ('pending', 'sending')",
    )
    .bind(error)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
