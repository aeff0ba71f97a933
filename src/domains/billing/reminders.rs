//! The reminder three days before a yearly renewal: an hourly job (on the platform runner) finds
//! the yearly paid subscriptions that are active, not set to end, and renew within three days,
//! and sends each one email. Once per period: a row keyed by (user, period end) is inserted in
//! the transaction that queues the email, so a second instance, a retried job or the next hour's
//! run finds it and sends nothing. A run that was missed is made up by the next one, as long as
//! the renewal is still ahead.

use serde_json::json;
use sqlx::Row;

use crate::{
    db::types::from_micros,
    domains::users,
    error::AppError,
    jobs::{from_fn, Every, JobError, Registry, Schedule},
    mail::{self, Email},
    state::{AppState, LateState},
};

use super::emails::Template;

/// The kind (and schedule) that sends the reminders.
pub const RENEWAL_REMINDERS: &str = "billing.renewal_reminders";

/// How long before a yearly renewal its reminder goes out.
const AHEAD_MICROS: i64 = 3 * 86_400 * 1_000_000;

/// Registers the reminder job, run every hour.
pub fn register(registry: &mut Registry, state: &LateState) {
    let state = state.clone();
    registry.register(
        RENEWAL_REMINDERS,
        from_fn(move |_| {
            let state = state.clone();
            async move {
                let state = state.for_job()?;
                let sent = send_due(&state)
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))?;
                tracing::info!(sent, "yearly renewal reminders queued");
                Ok(())
            }
        }),
    );
    registry.schedule(Schedule {
        name: RENEWAL_REMINDERS.into(),
        every: Every::Seconds(3600),
        kind: RENEWAL_REMINDERS.into(),
        payload: json!({}),
    });
}

/// A subscription whose renewal is near.
struct Due {
    user_id: String,
    plan: String,
    period_end: i64,
}

/// Queues the reminder of every yearly renewal within three days that has none yet; returns how
/// many were queued.
pub async fn send_due(state: &AppState) -> Result<u64, AppError> {
    let now = state.clock.now_micros();
    let rows = sqlx::query(
        "SELECT s.user_id, s.plan, s.current_period_end FROM billing_subscriptions s \
         WHERE s.cycle = 'yearly' AND s.status = 'active' AND s.plan <> 'free' \
           AND CAST(s.cancel_at_period_end AS INTEGER) = 0 \
           AND s.current_period_end > $1 AND s.current_period_end <= $2 \
           AND NOT EXISTS (SELECT 1 FROM billing_reminders r \
                           WHERE r.user_id = s.user_id AND r.period_end = s.current_period_end)",
    )
    .bind(now)
    .bind(now + AHEAD_MICROS)
    .fetch_all(state.db.pool())
    .await?;
    let mut sent = 0;
    for row in rows {
        let due = Due {
            user_id: row.try_get("user_id")?,
            plan: row.try_get("plan")?,
            period_end: row.try_get("current_period_end")?,
        };
        if remind(state, &due, now).await? {
            sent += 1;
        }
    }
    if sent > 0 {
        state.mail.wake();
    }
    Ok(sent)
}

/// Claims the reminder of `due`'s period and queues its email, in one transaction; `false` when
/// it was claimed before.
async fn remind(state: &AppState, due: &Due, now: i64) -> Result<bool, AppError> {
    let mut tx = state.db.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO billing_reminders (user_id, period_end, sent_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, period_end) DO NOTHING",
    )
    .bind(due.user_id.clone())
    .bind(due.period_end)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let user = users::service::user_by_id(&mut *tx, &due.user_id).await?;
    let (Some(user), true) = (user, claimed) else {
        tx.rollback().await?;
        return Ok(false);
    };
    let (name, amount_cents) = price(&mut tx, due).await?;
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    let email = Email {
        to: user.email,
        template: Template::RenewalReminder {
            plan: name,
            renews_on: from_micros(due.period_end).format("%-d %B %Y").to_string(),
            amount_cents,
            billing_url: format!("{base}/billing"),
        },
    };
    mail::enqueue(&mut tx, &email).await?;
    tx.commit().await?;
    Ok(true)
}

/// The plan's name and what the renewal will charge: the price of the latest yearly order of the
/// plan the account paid (an order keeps its price), else the catalogue's.
async fn price(conn: &mut sqlx::AnyConnection, due: &Due) -> Result<(String, i64), AppError> {
    let row = sqlx::query(
        "SELECT p.name, COALESCE((SELECT o.amount_cents FROM billing_orders o \
             WHERE o.user_id = $1 AND o.kind = 'subscription' AND o.product = p.code \
               AND o.cycle = 'yearly' AND o.status = 'paid' \
             ORDER BY o.paid_at DESC LIMIT 1), p.yearly_cents) AS amount_cents \
         FROM billing_plans p WHERE p.code = $2",
    )
    .bind(due.user_id.clone())
    .bind(due.plan.clone())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| anyhow::anyhow!("plan {} missing from the catalogue", due.plan))?;
    Ok((row.try_get("name")?, row.try_get("amount_cents")?))
}
