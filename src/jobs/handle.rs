//! [`Jobs`]: the handle kept in application state to queue jobs and to look after them.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    periods,
    registry::{Kind, Registry, Wakeup},
    schedule::{at, Every, Schedule},
    store,
    types::{Job, JobState, JobsError, NewJob},
};
use crate::db::{types::new_id, Db};

/// A declared schedule with its last and next run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleStatus {
    /// Its name.
    pub name: String,
    /// How often it runs.
    pub every: Every,
    /// The kind of job it queues.
    pub kind: String,
    /// When it last queued a job.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The job it last queued.
    pub last_job_id: Option<String>,
    /// When its next period begins (unknown until a runner has started once).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Queues jobs and looks after them; shares the registry with the runner. Cheap to clone.
#[derive(Clone)]
pub struct Jobs(Arc<Shared>);

struct Shared {
    db: Db,
    registry: Registry,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Jobs").field(&self.0.registry).finish()
    }
}

impl Jobs {
    /// The handle over `db` for the kinds and schedules of `registry`.
    pub fn new(db: Db, registry: Registry) -> Self {
        Self(Arc::new(Shared { db, registry }))
    }

    /// Queues `job` inside the caller's transaction (see [`store::enqueue`]); returns its id.
    pub async fn enqueue(
        &self,
        conn: &mut sqlx::AnyConnection,
        job: NewJob,
    ) -> Result<String, sqlx::Error> {
        store::enqueue(conn, job).await
    }

    /// Asks the runner to look for due jobs now; call it after committing queued jobs.
    pub fn wake(&self) {
        self.0.registry.wakeup.wake();
    }

    /// The wake-up call (for handles that queue jobs without holding `Jobs`).
    pub fn wakeup(&self) -> Wakeup {
        self.0.registry.wakeup.clone()
    }

    /// Whether a runner is running in this process.
    pub fn is_running(&self) -> bool {
        self.0.registry.wakeup.is_running()
    }

    /// One page (from 1) of jobs, newest first, optionally in one state; and the total.
    pub async fn list(
        &self,
        state: Option<JobState>,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<Job>, u64), sqlx::Error> {
        let limit = i64::from(per_page.max(1));
        let offset = i64::from(page.max(1) - 1) * limit;
        let (jobs, total) = store::list(self.0.db.pool(), state, limit, offset).await?;
        let jobs = jobs.into_iter().map(|j| self.effective(j)).collect();
        Ok((jobs, u64::try_from(total).unwrap_or(0)))
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, sqlx::Error> {
        let job = store::get(self.0.db.pool(), id).await?;
        Ok(job.map(|j| self.effective(j)))
    }

    /// Queues a `failed` or `dead` job again, due now with fresh attempts, and wakes the runner.
    pub async fn retry(&self, id: &str) -> Result<Job, JobsError> {
        let pool = self.0.db.pool();
        if let Some(job) = store::requeue(pool, id).await? {
            tracing::info!(id, kind = %job.kind, "job queued again by hand");
            self.wake();
            return Ok(self.effective(job));
        }
        match store::get(pool, id).await? {
            Some(job) => Err(JobsError::NotRetryable(job.state)),
            None => Err(JobsError::UnknownJob),
        }
    }

    /// Every declared schedule with its last and next run, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>, sqlx::Error> {
        let rows = periods::rows(self.0.db.pool()).await?;
        let mut all: Vec<ScheduleStatus> = self
            .0
            .registry
            .schedules
            .iter()
            .map(|s| {
                let row = rows.iter().find(|r| r.name == s.name);
                ScheduleStatus {
                    name: s.name.clone(),
                    every: s.every,
                    kind: s.kind.clone(),
                    last_run_at: at(row.and_then(|r| r.last_run_at)),
                    last_job_id: row.and_then(|r| r.last_job_id.clone()),
                    next_run_at: at(row.map(|r| r.next_run_at)),
                }
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Queues the job of schedule `name` now, outside its periods, and wakes the runner; returns
    /// the job's id. The next period is left as it was.
    pub async fn run_schedule_now(&self, name: &str) -> Result<String, JobsError> {
        let schedule = self
            .schedule(name)
            .ok_or_else(|| JobsError::UnknownSchedule(name.to_owned()))?;
        let job = NewJob::new(&schedule.kind, schedule.payload.clone()).idempotency_key(format!(
            "schedule:{}:now:{}",
            schedule.name,
            new_id()
        ));
        let mut tx = self.0.db.begin().await?;
        let id = store::enqueue(&mut tx, job).await?;
        periods::ran(&mut tx, name, &id).await?;
        tx.commit().await?;
        tracing::info!(schedule = name, job = %id, "scheduled job queued by hand");
        self.wake();
        Ok(id)
    }

    /// `job` with the attempts its kind allows, which its next claim will apply.
    fn effective(&self, mut job: Job) -> Job {
        if let Some(max) = self.kind(&job.kind).and_then(|k| k.limits.attempts()) {
            job.max_attempts = max;
        }
        job
    }

    pub(super) fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.0.registry.schedules.iter().find(|s| s.name == name)
    }

    pub(super) fn db(&self) -> &Db {
        &self.0.db
    }

    pub(super) fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub(super) fn kind(&self, kind: &str) -> Option<&Kind> {
        self.0.registry.kinds.get(kind)
    }
}
