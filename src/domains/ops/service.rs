//! Reading and steering the job runner for operators.

use crate::{
    error::AppError,
    http::pagination::Page,
    jobs::{Job, JobState, JobsError, ScheduleStatus},
    state::AppState,
};

use super::types::{JobQuery, JobView, ScheduleList, ScheduleRun, ScheduleView};

impl From<JobsError> for AppError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::UnknownJob => AppError::NotFound("No such job.".into()),
            JobsError::UnknownSchedule(name) => {
                AppError::NotFound(format!("No schedule is named `{name}`."))
            }
            JobsError::NotRetryable(state) => AppError::Conflict(format!(
                "The job is {state}; only failed or dead jobs can be retried."
            )),
            JobsError::Database(e) => e.into(),
        }
    }
}

/// A job as admins see it.
pub fn view(job: Job) -> JobView {
    JobView {
        id: job.id,
        kind: job.kind,
        state: job.state,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        run_at: job.run_at,
        lease_until: job.lease_until,
        last_error: job.last_error,
        payload: job.payload,
        created_at: job.created_at,
        updated_at: job.updated_at,
        finished_at: job.finished_at,
    }
}

/// One page of jobs, newest first.
pub async fn list(state: &AppState, query: &JobQuery) -> Result<Page<JobView>, AppError> {
    let filter = match query.state.as_deref() {
        None => None,
        Some(name) => Some(JobState::parse(name).ok_or_else(|| {
            AppError::invalid(
                "state",
                "must be one of queued, running, failed, dead, done",
            )
        })?),
    };
    let page = query.pagination();
    let (jobs, total) = state
        .jobs
        .list(filter, page.page(), page.per_page())
        .await?;
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    Ok(page.wrap(jobs.into_iter().map(view).collect(), total))
}

/// Queues a failed or dead job again.
pub async fn retry(state: &AppState, id: &str) -> Result<JobView, AppError> {
    Ok(view(state.jobs.retry(id).await?))
}

fn schedule_view(s: ScheduleStatus) -> ScheduleView {
    ScheduleView {
        name: s.name,
        every: s.every.to_string(),
        kind: s.kind,
        last_run_at: s.last_run_at,
        last_job_id: s.last_job_id,
        next_run_at: s.next_run_at,
    }
}

/// Every declared schedule.
pub async fn schedules(state: &AppState) -> Result<ScheduleList, AppError> {
    let all = state.jobs.schedules().await?;
    Ok(ScheduleList {
        schedules: all.into_iter().map(schedule_view).collect(),
    })
}

/// Queues a schedule's job now.
pub async fn run_schedule(state: &AppState, name: &str) -> Result<ScheduleRun, AppError> {
    Ok(ScheduleRun {
        job_id: state.jobs.run_schedule_now(name).await?,
    })
}
