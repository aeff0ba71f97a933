//! The SQL of refunds (`billing_refunds`). The invoice's side (its row lock, refunded and
//! reserved cents) is in `store.rs`.

use sqlx::{AnyConnection, Row};

/// A refund as stored.
#[derive(Debug, Clone)]
pub struct RefundRow {
    /// Its id (Stripe's idempotency key).
    pub id: String,
    /// The invoice refunded.
    pub invoice_id: String,
    /// Whose.
    pub user_id: String,
    /// `payfast` or `stripe`.
    pub provider: String,
    /// `admin` or `provider`.
    pub origin: String,
    /// `pending`, `succeeded`, `failed`.
    pub status: String,
    /// How much.
    pub amount_cents: i64,
    /// Why.
    pub reason: String,
    /// The admin who asked for it.
    pub actor_id: Option<String>,
    /// The provider's id of the refund (Stripe's `re_…`, or the event that told us).
    pub provider_refund_id: Option<String>,
    /// The admin's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// Asked at (µs).
    pub created_at: i64,
}

/// Stores a refund.
pub async fn insert_refund(conn: &mut AnyConnection, r: &RefundRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_refunds (id, invoice_id, user_id, provider, origin, status, \
         amount_cents, currency, reason, actor_id, provider_refund_id, created_at, completed_at, \
         idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ZAR', $8, $9, $10, $11, $12, $13)",
    )
    .bind(r.id.clone())
    .bind(r.invoice_id.clone())
    .bind(r.user_id.clone())
    .bind(r.provider.clone())
    .bind(r.origin.clone())
    .bind(r.status.clone())
    .bind(r.amount_cents)
    .bind(r.reason.clone())
    .bind(r.actor_id.clone())
    .bind(r.provider_refund_id.clone())
    .bind(r.created_at)
    .bind((r.status != "pending").then_some(r.created_at))
    .bind(r.idempotency_key.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// The refund of `invoice` made with idempotency `key`.
pub async fn refund_by_key(
    conn: &mut AnyConnection,
    invoice: &str,
    key: &str,
) -> Result<Option<RefundRow>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT id, invoice_id, user_id, provider, origin, status, amount_cents, reason, \
         actor_id, provider_refund_id, idempotency_key, created_at FROM billing_refunds \
         WHERE invoice_id = $1 AND idempotency_key = $2",
    )
    .bind(invoice.to_owned())
    .bind(key.to_owned())
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(RefundRow {
        id: row.try_get("id")?,
        invoice_id: row.try_get("invoice_id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        origin: row.try_get("origin")?,
        status: row.try_get("status")?,
        amount_cents: row.try_get("amount_cents")?,
        reason: row.try_get("reason")?,
        actor_id: row.try_get("actor_id")?,
        provider_refund_id: row.try_get("provider_refund_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
    }))
}

/// Ends a pending refund: `succeeded` (with the provider's id) or `failed` (its idempotency
/// key freed, so that a retry with it asks the provider again).
pub async fn finish_refund(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    provider_refund_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_refunds SET status = $2, provider_refund_id = $3, completed_at = $4, \
         idempotency_key = CASE WHEN $2 = 'failed' THEN NULL ELSE idempotency_key END \
         WHERE id = $1",
    )
    .bind(id.to_owned())
    .bind(status.to_owned())
    .bind(provider_refund_id.map(str::to_owned))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
