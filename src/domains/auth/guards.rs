//! Budgets claimed atomically (`auth_guards`): a number of uses per window, optionally a
//! minimum gap between two, per subject and kind, shared by every instance. The lockout claims
//! password and code guesses from them, the emails their per-recipient budgets.

use sqlx::{AnyConnection, Row};

use crate::{db::types::now_micros, error::AppError, state::AppState};

/// The longest window of any budget: idle rows older than this are deleted.
const HOUR_MICROS: i64 = 3600 * 1_000_000;

/// Claims one use of a budget of `max` uses per `window` (µs), at least `gap` (µs) apart, for
/// `subject` and `kind`, in one conditional UPDATE (atomic on both databases, across
/// instances); returns the use's number in the window, or `None` while the budget is spent or
/// the subject locked.
pub async fn claim_in(
    conn: &mut AnyConnection,
    subject: &str,
    kind: &str,
    max: i64,
    window: i64,
    gap: Option<i64>,
) -> Result<Option<i64>, sqlx::Error> {
    let now = now_micros();
    // A new row starts with its window and gap already over.
    sqlx::query(
        "INSERT INTO auth_guards (subject, kind, claims, window_start, locked_until, updated_at) \
         VALUES ($1, $2, 0, $3, NULL, $4) ON CONFLICT (subject, kind) DO NOTHING",
    )
    .bind(subject.to_owned())
    .bind(kind.to_owned())
    .bind(now - window - 1)
    .bind(now - gap.unwrap_or(0) - 1)
    .execute(&mut *conn)
    .await?;
    // A window that has passed starts again at one use.
    let granted = sqlx::query(
        "UPDATE auth_guards SET \
           claims = CASE WHEN window_start <= $3 THEN 1 ELSE claims + 1 END, \
           window_start = CASE WHEN window_start <= $3 THEN $4 ELSE window_start END, \
           updated_at = $4 \
         WHERE subject = $1 AND kind = $2 \
           AND (locked_until IS NULL OR locked_until <= $4) \
           AND (claims < $5 OR window_start <= $3) \
           AND updated_at <= $6 \
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
