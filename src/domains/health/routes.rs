//! Probe and status handlers.

use axum::{extract::State, http::StatusCode, Json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::Problem, state::AppState};

use super::{
    cache::HealthCache,
    service,
    types::{Health, Ok, Status, Verdict, Version},
};

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(alive))
        .routes(routes!(ready))
        .routes(routes!(api_health))
        .routes(routes!(api_status))
        .routes(routes!(version))
}

/// The process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process answers", body = Ok)))]
async fn health() -> Json<Ok> {
    Json(Ok { status: "ok" })
}

/// Liveness: touches nothing but the process.
#[utoipa::path(get, path = "/alive", tag = "health",
    responses((status = 200, description = "The process is alive", body = Ok)))]
async fn alive() -> Json<Ok> {
    Json(Ok { status: "ok" })
}

/// Readiness: the database answers within one second and takes writes.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, description = "Ready for traffic", body = Ok),
    (status = 503, description = "The database does not answer or refuses writes", body = Problem, content_type = "application/problem+json")))]
async fn ready(State(state): State<AppState>) -> Result<Json<Ok>, crate::error::AppError> {
    let health = state.get::<HealthCache>().health(&state).await;
    if health
        .checks
        .get("database")
        .is_some_and(|c| c.status == "up")
    {
        Ok(Json(Ok { status: "ok" }))
    } else {
        Err(crate::error::AppError::Unavailable(
            "database not ready".into(),
        ))
    }
}

/// Health of the service and each dependency.
#[utoipa::path(get, path = "/api/health", tag = "health", responses(
    (status = 200, description = "Healthy or degraded", body = Health),
    (status = 503, description = "Unhealthy: the database does not answer or refuses writes", body = Health)))]
async fn api_health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let health = state.get::<HealthCache>().health(&state).await;
    let code = if health.status == Verdict::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(health))
}

/// What is running: version, commit, environment, and which subsystems are on.
#[utoipa::path(get, path = "/api/status", tag = "health",
    responses((status = 200, description = "The status of this process", body = Status)))]
async fn api_status(State(state): State<AppState>) -> Json<Status> {
    Json(service::status(&state))
}

/// The running version and the commit it was built from.
#[utoipa::path(get, path = "/version.json", tag = "health",
    responses((status = 200, description = "Version facts", body = Version)))]
async fn version(State(state): State<AppState>) -> Json<Version> {
    let b = &state.config.build;
    Json(Version {
        version: b.version.clone(),
        git_sha: b.git_sha.clone(),
        build_time: b.build_time.clone(),
    })
}
