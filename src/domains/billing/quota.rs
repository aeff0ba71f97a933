//! Plan quotas, for other domains: [`consume`] claims uses of a monthly counter
//! (`assistant_messages`, `agent_runs`) against the limit of the account's plan, atomically on
//! both databases and across instances; over the limit it fails with `AppError::PlanLimit`
//! (429 `/problems/plan-limit`). [`consume_in`] does the same inside the caller's transaction, and
//! [`release`] gives uses back (an AI call that failed).
//!
//! The plan is the subscription as `GET /api/billing/subscription` reads it: a paid plan keeps its
//! limits while it is `past_due` within `BILLING_GRACE_DAYS` and while a cancelled one runs to the
//! end of its paid period. Months are calendar months in Johannesburg (`calendar`). The SQL of `billing_usage` is here.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::{
    db::types::to_micros,
    error::{AppError, PlanLimit},
    state::AppState,
};

use super::{
    calendar,
    service::{grace, subscription_view},
    store,
    types::{Counter, CounterUsage, PlanCode, PlanLimits, UsageCounters, UsageView},
};

/// A counter after a use was claimed (or as it stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The counter.
    pub counter: Counter,
    /// The plan whose limit applies.
    pub plan: PlanCode,
    /// Used this month, this use included.
    pub used: i64,
    /// The plan's limit for a month.
    pub limit: i64,
    /// When this month began.
    pub period_start: DateTime<Utc>,
    /// When the next month begins (the counter starts again from zero).
    pub resets_at: DateTime<Utc>,
}

/// Claims `n` uses of `counter` for `user` in its own transaction; see [`consume_in`].
pub async fn consume(
    state: &AppState,
    user: &str,
    counter: Counter,
    n: u32,
) -> Result<Usage, AppError> {
    let mut tx = state.db.begin().await?;
    let usage = consume_in(state, &mut tx, user, counter, n).await?;
    tx.commit().await?;
    Ok(usage)
}

/// Claims `n` uses of `counter` for `user` in the caller's transaction (so they count only if it
/// commits): one conditional upsert, so concurrent claims never grant more than the limit. Over
/// the limit nothing is counted and the answer is `AppError::PlanLimit`; the transaction is still
/// usable. `n = 0` only reads the counter.
#[tracing::instrument(skip(state, conn), fields(counter = counter.as_str()))]
pub async fn consume_in(
    state: &AppState,
    conn: &mut AnyConnection,
    user: &str,
    counter: Counter,
    n: u32,
) -> Result<Usage, AppError> {
    let now = state.clock.now_micros();
    let (plan, limits) = plan_limits(state, conn, user, now).await?;
    let limit = i64::try_from(counter.limit_in(&limits)).unwrap_or(i64::MAX);
    let (start, next) = calendar::month_of(now);
    let n = i64::from(n);
    let usage = |used| Usage {
        counter,
        plan,
        used,
        limit,
        period_start: start,
        resets_at: next,
    };
    if n == 0 {
        return Ok(usage(used(conn, user, counter, to_micros(start)).await?));
    }
    let granted = if n <= limit {
        claim(conn, user, counter, to_micros(start), n, limit, now).await?
    } else {
        None
    };
    if let Some(used) = granted {
        return Ok(usage(used));
    }
    let used = used(conn, user, counter, to_micros(start)).await?;
    tracing::info!(
        used,
        limit,
        n,
        plan = plan.as_str(),
        "a plan limit was reached"
    );
    Err(AppError::PlanLimit(Box::new(PlanLimit {
        counter: counter.as_str().into(),
        limit,
        used,
        plan: plan.as_str().into(),
        resets_at: next,
        upgrade_url: upgrade_url(state),
    })))
}

/// Gives back `n` uses of the month that `taken` was claimed in (never below zero): for work that
/// was counted and then failed.
pub async fn release(state: &AppState, user: &str, taken: &Usage, n: u32) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE billing_usage SET used = CASE WHEN used > $4 THEN used - $4 ELSE 0 END, \
         updated_at = $5 WHERE user_id = $1 AND counter = $2 AND period_start = $3",
    )
    .bind(user.to_owned())
    .bind(taken.counter.as_str())
    .bind(to_micros(taken.period_start))
    .bind(i64::from(n))
    .bind(state.clock.now_micros())
    .execute(state.db.pool())
    .await?;
    Ok(())
}

/// The caller's plan and each counter this month.
pub async fn usage(state: &AppState, user: &str) -> Result<UsageView, AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let now = state.clock.now_micros();
    let (plan, limits) = plan_limits(state, &mut conn, user, now).await?;
    let (start, next) = calendar::month_of(now);
    let mut counters = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        counters.push(CounterUsage {
            used: used(&mut conn, user, counter, to_micros(start)).await?,
            limit: i64::try_from(counter.limit_in(&limits)).unwrap_or(i64::MAX),
            resets_at: next,
        });
    }
    let [assistant_messages, agent_runs] = <[CounterUsage; 2]>::try_from(counters)
        .map_err(|_| anyhow::anyhow!("one usage per counter"))?;
    Ok(UsageView {
        plan,
        period_start: start,
        resets_at: next,
        counters: UsageCounters {
            assistant_messages,
            agent_runs,
        },
    })
}

/// Where a higher plan is bought: the web app's plans page.
pub fn upgrade_url(state: &AppState) -> String {
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    format!("{base}/billing/plans")
}

/// The plan in effect for `user` at `now` and its limits, from the catalogue.
async fn plan_limits(
    state: &AppState,
    conn: &mut AnyConnection,
    user: &str,
    now: i64,
) -> Result<(PlanCode, PlanLimits), AppError> {
    let row = store::subscription(&mut *conn, user).await?;
    let plan = subscription_view(row.as_ref(), now, grace(state)).plan;
    let stored = store::plan_by_code(&mut *conn, plan.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("plan {} missing from the catalogue", plan.as_str()))?;
    let limits = serde_json::from_str(&stored.limits).map_err(anyhow::Error::from)?;
    Ok((plan, limits))
}

/// Adds `n` to the counter of the month that began at `period` if the sum stays within `limit`
/// (a new row when it is the month's first use), in one statement: the upsert locks an existing
/// row and checks the condition on its latest version (PostgreSQL), or runs alone (SQLite). The
/// new total, or `None` when it would go over.
async fn claim(
    conn: &mut AnyConnection,
    user: &str,
    counter: Counter,
    period: i64,
    n: i64,
    limit: i64,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO billing_usage (user_id, counter, period_start, used, updated_at) \
         VALUES ($1, $2, $3, $4, $6) \
         ON CONFLICT (user_id, counter, period_start) DO UPDATE SET \
           used = billing_usage.used + excluded.used, updated_at = excluded.updated_at \
         WHERE billing_usage.used + excluded.used <= $5 \
         RETURNING used",
    )
    .bind(user.to_owned())
    .bind(counter.as_str())
    .bind(period)
    .bind(n)
    .bind(limit)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get("used")).transpose()
}

/// What `user` used of `counter` in the month that began at `period`.
async fn used(
    conn: &mut AnyConnection,
    user: &str,
    counter: Counter,
    period: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT used FROM billing_usage \
         WHERE user_id = $1 AND counter = $2 AND period_start = $3",
    )
    .bind(user.to_owned())
    .bind(counter.as_str())
    .bind(period)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get("used")).transpose()?.unwrap_or(0))
}
