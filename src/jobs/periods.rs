//! Schedules in the database: each declared schedule has a row in `job_schedules`, and an
//! instance claims a period by moving `next_run_at` on with a conditional update; only the winner
//! queues the period's job, in the same transaction.

use sqlx::{AnyConnection, AnyPool, Row};

use super::{schedule::Schedule, store, types::NewJob};
use crate::db::{types::now_micros, Db};

/// Gives each declared schedule its row (an existing row keeps its next run); false on failure.
pub(super) async fn declare(db: &Db, schedules: &[Schedule]) -> bool {
    let now = now_micros();
    for s in schedules {
        let every = s.every.to_string();
        let next = s.every.next_after(now);
        if let Err(e) = upsert(db.pool(), &s.name, &every, next).await {
            tracing::warn!(schedule = %s.name, error = %e, "cannot declare the schedule; will retry");
            return false;
        }
    }
    true
}

/// Claims the period of `schedule` that began at `due` and, in the same transaction, queues its
/// job; `None` when another instance claimed the period first.
pub(super) async fn fire(
    db: &Db,
    schedule: &Schedule,
    due: i64,
) -> Result<Option<String>, sqlx::Error> {
    // Periods missed while no instance ran are not caught up one by one: the next is after now.
    let next = schedule.every.next_after(now_micros().max(due));
    let mut tx = db.begin().await?;
    if !claim(&mut tx, &schedule.name, due, next).await? {
        return Ok(None);
    }
    let job = NewJob::new(&schedule.kind, schedule.payload.clone())
        .idempotency_key(schedule.period_key(due));
    let id = store::enqueue(&mut tx, job).await?;
    ran(&mut tx, &schedule.name, &id).await?;
    tx.commit().await?;
    Ok(Some(id)) // the runner claims it right after firing its schedules
}

/// A schedule's row.
#[derive(Debug, Clone)]
pub(super) struct ScheduleRow {
    pub(super) name: String,
    pub(super) next_run_at: i64,
    pub(super) last_run_at: Option<i64>,
    pub(super) last_job_id: Option<String>,
}

/// Creates the row of a declared schedule. An existing row keeps its `next_run_at`, unless the
/// interval changed: then `next_run_at` (the first period of the new interval) replaces it.
async fn upsert(
    pool: &AnyPool,
    name: &str,
    every: &str,
    next_run_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_schedules (name, every, next_run_at, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET \
         next_run_at = CASE WHEN job_schedules.every = excluded.every \
                            THEN job_schedules.next_run_at ELSE excluded.next_run_at END, \
         every = excluded.every, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(every)
    .bind(next_run_at)
    .bind(now_micros())
    .execute(pool)
    .await?;
    Ok(())
}

/// Every schedule row.
pub(super) async fn rows(pool: &AnyPool) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, next_run_at, last_run_at, last_job_id FROM job_schedules")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ScheduleRow {
                name: r.try_get("name")?,
                next_run_at: r.try_get("next_run_at")?,
                last_run_at: r.try_get("last_run_at")?,
                last_job_id: r.try_get("last_job_id")?,
            })
        })
        .collect()
}

/// Claims the period of schedule `name` that was due at `due`, moving it on to `next`; false
/// when another instance claimed it first.
async fn claim(
    conn: &mut AnyConnection,
    name: &str,
    due: i64,
    next: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE job_schedules SET next_run_at = $1 WHERE name = $2 AND next_run_at = $3",
    )
    .bind(next)
    .bind(name)
    .bind(due)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that schedule `name` queued `job_id` now.
pub(super) async fn ran(
    conn: &mut AnyConnection,
    name: &str,
    job_id: &str,
) -> Result<(), sqlx::Error> {
    let now = now_micros();
    sqlx::query(
        "UPDATE job_schedules SET last_run_at = $1, last_job_id = $2, updated_at = $1 \
         WHERE name = $3",
    )
    .bind(now)
    .bind(job_id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}
