//! The SQL of the jobs table. Claims and outcomes are conditional updates, so that several
//! runners on one database (PostgreSQL, or one SQLite file) never hold the same job at once and a
//! runner that lost its claim cannot overwrite what the next one recorded.

use sqlx::{any::AnyRow, AnyConnection, AnyPool, Row};

use super::{
    schedule::at,
    types::{Job, JobState, NewJob},
};
use crate::db::types::{from_micros, new_id, now_micros, to_micros};

const COLUMNS: &str = "id, kind, payload, idempotency_key, state, attempts, max_attempts, run_at, \
                       lease_until, last_error, created_at, updated_at, finished_at";

/// Queues `job` on `conn`, which should be the transaction of the change that causes it, and
/// returns its id. A job with the same idempotency key already queued wins: its id is returned
/// and nothing is created. Call [`Jobs::wake`] after committing.
pub async fn enqueue(conn: &mut sqlx::AnyConnection, job: NewJob) -> Result<String, sqlx::Error> {
    insert(conn, &job).await
}

/// Queued and due, failed and due for its retry, or running under a lease that has expired.
const CLAIMABLE: &str = "((state IN ('queued', 'failed') AND run_at <= $1) \
                         OR (state = 'running' AND lease_until < $1))";

/// Inserts `job` unless its idempotency key is taken; the id of the job that holds the key.
pub async fn insert(conn: &mut AnyConnection, job: &NewJob) -> Result<String, sqlx::Error> {
    let id = new_id();
    let now = now_micros();
    let payload = job.payload.to_string();
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, payload, idempotency_key, state, attempts, max_attempts, \
         run_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&job.kind)
    .bind(payload)
    .bind(job.idempotency_key.clone())
    .bind(i64::from(job.max_attempts.max(1)))
    .bind(job.run_at.map_or(now, to_micros))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(id);
    }
    sqlx::query("SELECT id FROM jobs WHERE idempotency_key = $1")
        .bind(job.idempotency_key.clone())
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")
}

/// Up to `limit` claimable job ids, the longest due first.
pub async fn due_ids(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!("SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY run_at LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// A job claimed by one runner until its lease ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// Claims job `id` under `token` until `lease_until`, counting the attempt; `None` when another
/// runner got it first (PostgreSQL re-checks the condition on the row it waited for).
pub async fn claim(
    pool: &AnyPool,
    id: &str,
    token: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let sql = format!(
        "UPDATE jobs SET state = 'running', leased_by = $2, lease_until = $3, updated_at = $1, \
         attempts = attempts + 1 WHERE id = $4 AND {CLAIMABLE} \
         RETURNING kind, payload, attempts, max_attempts"
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
            kind: r.try_get("kind")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
            max_attempts: r.try_get("max_attempts")?,
        })
    })
    .transpose()
}

/// Extends the lease of a job still held under `token`; false if the claim was lost.
pub async fn extend(
    pool: &AnyPool,
    id: &str,
    token: &str,
    lease_until: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND leased_by = $3 AND state = 'running'",
    )
    .bind(lease_until)
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done,
    Retry { run_at: i64, error: String },
    Dead { error: String },
}

/// Records `outcome` if the claim `token` still holds; false if another runner took the job over.
/// `max_attempts` is written too, as the kind may have overridden what the job was queued with.
pub async fn record(
    pool: &AnyPool,
    id: &str,
    token: &str,
    max_attempts: i64,
    outcome: &Outcome,
) -> Result<bool, sqlx::Error> {
    let now = now_micros();
    let (state, run_at, error, finished) = match outcome {
        Outcome::Done => ("done", None, None, Some(now)),
        Outcome::Retry { run_at, error } => ("failed", Some(*run_at), Some(error.as_str()), None),
        Outcome::Dead { error } => ("dead", None, Some(error.as_str()), Some(now)),
    };
    let done = sqlx::query(
        "UPDATE jobs SET state = $1, run_at = COALESCE($2, run_at), \
         last_error = COALESCE($3, last_error), finished_at = $4, updated_at = $5, \
         max_attempts = $6, lease_until = NULL, leased_by = NULL \
         WHERE id = $7 AND leased_by = $8 AND state = 'running'",
    )
    .bind(state)
    .bind(run_at)
    .bind(error)
    .bind(finished)
    .bind(now)
    .bind(max_attempts)
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn job(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let payload: String = row.try_get("payload")?;
    let state: String = row.try_get("state")?;
    let count = |c: &str| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i64, _>(c)?.max(0)).unwrap_or(u32::MAX))
    };
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        idempotency_key: row.try_get("idempotency_key")?,
        state: JobState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown job state `{state}`").into()))?,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        run_at: from_micros(row.try_get("run_at")?),
        lease_until: at(row.try_get("lease_until")?),
        last_error: row.try_get("last_error")?,
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
        finished_at: at(row.try_get("finished_at")?),
    })
}

/// One job.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(job).transpose()
}

/// One page of jobs, newest first, and how many match in all.
pub async fn list(
    pool: &AnyPool,
    state: Option<JobState>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Job>, i64), sqlx::Error> {
    // `$1 IS NULL` needs a type on PostgreSQL; an empty name matches no state instead.
    let state = state.map_or("", JobState::as_str);
    let filter = "($1 = '' OR state = $1)";
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE {filter} ORDER BY created_at DESC, id DESC \
         LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(&sql)
        .bind(state)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM jobs WHERE {filter}"))
        .bind(state)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    Ok((rows.iter().map(job).collect::<Result<_, _>>()?, total))
}

/// Puts a failed or dead job back in the queue, due now and with fresh attempts; `None` when no
/// such job is in one of those states.
pub async fn requeue(pool: &AnyPool, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1, \
         finished_at = NULL, lease_until = NULL, leased_by = NULL \
         WHERE id = $2 AND state IN ('failed', 'dead') RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(now_micros())
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(job).transpose()
}
