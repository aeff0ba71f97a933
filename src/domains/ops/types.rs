//! Jobs and schedules as admins see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    http::pagination::{PageNumber, Pagination, PerPage},
    jobs::JobState,
};

/// Filters of `GET /api/admin/jobs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>, inline)]
    pub state: Option<String>,
    /// Page number, from 1.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64)]
    pub page: Option<PageNumber>,
    /// Items per page, 1 to 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<PerPage>,
}

impl JobQuery {
    /// The page asked for.
    pub fn pagination(&self) -> Pagination {
        Pagination {
            page: self.page,
            per_page: self.per_page,
        }
    }
}

/// A job as admins see it: never a secret, a password or a link token (a mail job shows its
/// recipient and template, not the message).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// The id.
    pub id: String,
    /// What runs it (`mail.send`, `jobs.prune`).
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed before it is given up on.
    pub max_attempts: u32,
    /// When it may run (next).
    pub run_at: DateTime<Utc>,
    /// Until when its runner holds it (running jobs).
    pub lease_until: Option<DateTime<Utc>>,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// Its parameters: ids and safe data only.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended (`done` or `dead`).
    pub finished_at: Option<DateTime<Utc>>,
}

/// A declared schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// How often it runs (`every 300s`, `daily at 03:00 UTC`).
    pub every: String,
    /// The kind of job it queues.
    pub kind: String,
    /// When it last queued a job.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The job it last queued.
    pub last_job_id: Option<String>,
    /// When its next period begins (unknown until a runner has started once).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// `GET /api/admin/jobs/schedules`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleList {
    /// Every schedule declared in this build, by name.
    pub schedules: Vec<ScheduleView>,
}

/// `POST /api/admin/jobs/schedules/{name}/run`: the job queued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleRun {
    /// The id of the job queued now.
    pub job_id: String,
}
