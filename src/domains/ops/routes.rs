//! `/api/admin/jobs…`: admins only ([`AdminUser`]).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::auth::extract::AdminUser,
    error::{AppError, Problem},
    http::{pagination::Page, query::AppQuery},
    state::AppState,
};

use super::{
    service,
    types::{JobQuery, JobView, ScheduleList, ScheduleRun},
};

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
        .routes(routes!(list_schedules))
        .routes(routes!(run_schedule))
}

/// Lists jobs, newest first, optionally in one state.
#[utoipa::path(get, path = "/api/admin/jobs", tag = "admin", security(("bearerAuth" = [])), params(JobQuery), responses(
    (status = 200, description = "One page of jobs, newest first", body = Page<JobView>),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Unknown state", body = Problem, content_type = "application/problem+json")))]
async fn list_jobs(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<JobQuery>,
) -> Result<Json<Page<JobView>>, AppError> {
    Ok(Json(service::list(&state, &q).await?))
}

/// Queues a failed or dead job again, due now with fresh attempts.
#[utoipa::path(post, path = "/api/admin/jobs/{id}/retry", tag = "admin", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Job id")), responses(
    (status = 202, description = "Queued again", body = JobView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The job is queued, running or done", body = Problem, content_type = "application/problem+json")))]
async fn retry_job(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), AppError> {
    crate::http::validate::known_id(&id, "No such job.")?;
    Ok((
        StatusCode::ACCEPTED,
        Json(service::retry(&state, &id).await?),
    ))
}

/// The declared schedules with their last and next run.
#[utoipa::path(get, path = "/api/admin/jobs/schedules", tag = "admin", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Every schedule", body = ScheduleList),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json")))]
async fn list_schedules(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<ScheduleList>, AppError> {
    Ok(Json(service::schedules(&state).await?))
}

/// Queues a schedule's job now, outside its periods (the next period is unchanged).
#[utoipa::path(post, path = "/api/admin/jobs/schedules/{name}/run", tag = "admin", security(("bearerAuth" = [])), params(("name" = String, Path, description = "Schedule name")), responses(
    (status = 202, description = "Queued", body = ScheduleRun),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such schedule", body = Problem, content_type = "application/problem+json")))]
async fn run_schedule(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ScheduleRun>), AppError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(service::run_schedule(&state, &name).await?),
    ))
}
