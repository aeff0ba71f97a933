//! The runner's own upkeep: finished jobs are deleted after a while, so the table stays small.

use std::time::Duration;

use serde_json::json;

use super::{from_fn, Every, JobError, Registry, Schedule};
use crate::db::{types::now_micros, Db};

/// The kind (and schedule) that deletes old finished jobs.
pub const PRUNE: &str = "jobs.prune";

/// How long `done` and `dead` jobs stay visible to admins.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Registers the prune job, run daily at 03:00 UTC.
pub fn register(registry: &mut Registry, db: Db) {
    registry.register(
        PRUNE,
        from_fn(move |_| {
            let db = db.clone();
            async move {
                prune(&db)
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))
            }
        }),
    );
    registry.schedule(Schedule {
        name: PRUNE.into(),
        every: Every::DailyAt { hour: 3, minute: 0 },
        kind: PRUNE.into(),
        payload: json!({}),
    });
}

async fn prune(db: &Db) -> Result<(), sqlx::Error> {
    let keep = i64::try_from(KEEP_FINISHED.as_micros()).unwrap_or(i64::MAX);
    let deleted =
        sqlx::query("DELETE FROM jobs WHERE state IN ('done', 'dead') AND finished_at < $1")
            .bind(now_micros() - keep)
            .execute(db.pool())
            .await?
            .rows_affected();
    tracing::info!(deleted, "old finished jobs deleted");
    Ok(())
}
