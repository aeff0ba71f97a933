//! Admin handlers: 401 for anonymous callers, 403 for non-admins.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::audit::{types::AuditEntry, RequestMeta},
    domains::auth::extract::AdminUser,
    error::{AppError, Problem},
    http::{
        json::AppJson,
        pagination::Page,
        query::AppQuery,
        validate::{filters, known_id},
    },
    state::AppState,
};

use super::{
    service,
    types::{AdminUserPatch, AdminUserView, AuditQuery, UserQuery},
};

const NO_USER: &str = "No such user.";

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, patch_user))
        .routes(routes!(revoke_sessions))
        .routes(routes!(audit))
}

/// Lists users, filtered by role, text and status.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", security(("bearerAuth" = [])), params(UserQuery), responses(
    (status = 200, description = "One page of users, newest first", body = Page<AdminUserView>),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json")))]
async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<UserQuery>,
) -> Result<AppJson<Page<AdminUserView>>, AppError> {
    filters(&[("q", q.q.as_deref())])?;
    Ok(AppJson(service::list_users(&state, &q).await?))
}

/// One user.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "User id")), responses(
    (status = 200, description = "The user", body = AdminUserView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn get_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<AppJson<AdminUserView>, AppError> {
    known_id(&id, NO_USER)?;
    Ok(AppJson(service::get_user(&state, &id).await?))
}

/// Changes a user's role or status; their access tokens stop working at once.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "User id")), request_body = AdminUserPatch, responses(
    (status = 200, description = "The updated user", body = AdminUserView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "An admin cannot change their own role or status", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Unknown fields or values", body = Problem, content_type = "application/problem+json")))]
async fn patch_user(
    State(state): State<AppState>,
    meta: RequestMeta,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    AppJson(patch): AppJson<AdminUserPatch>,
) -> Result<AppJson<AdminUserView>, AppError> {
    known_id(&id, NO_USER)?;
    Ok(AppJson(
        service::patch_user(&state, &meta, &admin.user, &id, patch).await?,
    ))
}

/// Ends every session of a user.
#[utoipa::path(post, path = "/api/admin/users/{id}/revoke-sessions", tag = "admin", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "User id")), responses(
    (status = 204, description = "Every session ended"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn revoke_sessions(
    State(state): State<AppState>,
    meta: RequestMeta,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    known_id(&id, NO_USER)?;
    service::revoke_sessions(&state, &meta, &admin.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit trail, filtered by actor, action, target and time.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", security(("bearerAuth" = [])), params(AuditQuery), responses(
    (status = 200, description = "One page of events, newest first", body = Page<AuditEntry>),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json")))]
async fn audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<AppJson<Page<AuditEntry>>, AppError> {
    filters(&[
        ("actor", q.actor.as_deref()),
        ("action", q.action.as_deref()),
        ("target", q.target.as_deref()),
    ])?;
    Ok(AppJson(service::audit(&state, q).await?))
}
