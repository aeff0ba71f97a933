//! Budgets claimed atomically (`auth_guards`): a number of uses per window, optionally a
//! minimum gap between two, per subject and kind, shared by every instance. The lockout claims
//! password and code guesses from them, the emails their per-recipient budgets.

use sqlx::{AnyConnection, Row};

use crate::{db::types::now_micros, error::AppError, state::AppState};

/// The longest window of any budget: idle rows older than this are deleted.
const HOUR_MICROS: i64 = 3600 * 1_000_000;

/// Claims one use of a budget of `max` uses per `window` (µs), at least `gap` (µs) apart, for
/// `subject` and `kind`, in one conditional upsert (atomic on both databases, across
/// instances); returns the use's number in the window, or `None` while the budget is spent or
/// the subject locked. `now` is the caller's clock (µs), which may be a little behind or ahead of the clocks of
/// other claims (other instances, or a claim delayed in a queue).
pub async fn claim_at(
    conn: &mut AnyConnection,
    now: i64,
    subject: &str,
    kind: &str,
    max: i64,
    window: i64,
    gap: Option<i64>,
) -> Result<Option<i64>, sqlx::Error> {
    // One statement: a new subject's row is made with this first use in it; an existing row
    // is locked and its conditions checked on its latest version (an upsert is atomic on both
    // databases). A row made "already over" at one claim's clock and then counted by a claim
    // whose clock was behind lost that count, so the first use is never a separate step.
    let granted = sqlx::query(
        "INSERT INTO auth_guards (subject, kind, claims, window_start, locked_until, updated_at) \
         VALUES ($1, $2, 1, $4, NULL, $4) \
         ON CONFLICT (subject, kind) DO UPDATE SET \
           claims = CASE WHEN auth_guards.window_start <= $3 THEN 1 \
                         ELSE auth_guards.claims + 1 END, \
           window_start = CASE WHEN auth_guards.window_start <= $3 THEN $4 \
                               ELSE auth_guards.window_start END, \
           updated_at = $4 \
         WHERE (auth_guards.locked_until IS NULL OR auth_guards.locked_until <= $4) \
           AND (auth_guards.claims < $5 OR auth_guards.window_start <= $3) \
           AND auth_guards.updated_at <= $6 \
         RETURNING claims",
    )
    .bind(subject.to_owned())
    .bind(kind.to_owned())
    .bind(now - window)
    .bind(now)
    .bind(max)
    .bind(gap.map_or(i64::MAX, |gap| now - gap))
    .fetch_optional(&mut *conn)
    .await?;
    granted.map(|row| row.try_get("claims")).transpose()
}

/// Deletes the budgets idle for longer than their window and lock (unknown subjects' rows, and
/// spent ones): an hour for every kind, the longest window; returns how many.
pub async fn prune(state: &AppState) -> Result<u64, AppError> {
    let now = now_micros();
    let done = sqlx::query(
        "DELETE FROM auth_guards WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
    )
    .bind(now - HOUR_MICROS)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(done.rows_affected())
}
