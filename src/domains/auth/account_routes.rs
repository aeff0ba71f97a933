//! Handlers for the signed-in user's own account: /me, password, sessions, activity, MFA, and
//! the developer profile.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::{
        audit::{types::AuditEntry, RequestMeta},
        users::{
            profile::{self, DeveloperProfile},
            UserView,
        },
    },
    error::{AppError, Problem},
    http::{
        json::AppJson,
        pagination::{Page, Pagination},
        query::AppQuery,
    },
    state::AppState,
};

use super::{
    account,
    extract::{AuthUser, DeveloperUser},
    mfa,
    types::{
        ChangePasswordRequest, MfaDisable, MfaEnable, MfaSetup, RecoveryCodes, SessionView,
        UpdateMeRequest,
    },
};

/// The routes of the signed-in user's account.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
        .routes(routes!(activity))
        .routes(routes!(mfa_setup))
        .routes(routes!(mfa_enable))
        .routes(routes!(mfa_disable))
        .routes(routes!(developer_me, update_developer_me))
}

/// The signed-in user with their role-specific profile.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The user", body = UserView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn me(me: AuthUser) -> AppJson<UserView> {
    AppJson(UserView::from(&me.user))
}

/// Updates own names and profile; `role`, `email`, `is_active`, `id` or unknown fields are 422.
#[utoipa::path(patch, path = "/api/auth/me", tag = "auth", security(("bearerAuth" = [])), request_body = UpdateMeRequest, responses(
    (status = 200, description = "The updated user", body = UserView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "A profile field the caller's role does not have", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
async fn update_me(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
    AppJson(req): AppJson<UpdateMeRequest>,
) -> Result<AppJson<UserView>, AppError> {
    let user = account::update_me(&state, &meta, &me.user, req).await?;
    Ok(AppJson(UserView::from(&user)))
}

/// Changes the password; the user's other sessions end and a notice is emailed.
#[utoipa::path(post, path = "/api/auth/change-password", tag = "auth", security(("bearerAuth" = [])), request_body = ChangePasswordRequest, responses(
    (status = 204, description = "Changed"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "A weak new password", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Locked after repeated failures", body = Problem, content_type = "application/problem+json")))]
async fn change_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> Result<StatusCode, AppError> {
    account::change_password(&state, &meta, &me.user, &me.session_id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's live sessions.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Live sessions, newest first", body = Vec<SessionView>),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn list_sessions(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<Vec<SessionView>>, AppError> {
    Ok(AppJson(
        account::list_sessions(&state, &me.user, &me.session_id).await?,
    ))
}

/// Ends one of the user's sessions.
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "auth", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Session id")), responses(
    (status = 204, description = "Ended"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such session of this user", body = Problem, content_type = "application/problem+json")))]
async fn delete_session(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    crate::http::validate::known_id(&id, "No such session.")?;
    account::delete_session(&state, &meta, &me.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's own security events, newest first.
#[utoipa::path(get, path = "/api/auth/activity", tag = "auth", security(("bearerAuth" = [])), params(Pagination), responses(
    (status = 200, description = "One page of events", body = Page<AuditEntry>),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn activity(
    State(state): State<AppState>,
    me: AuthUser,
    AppQuery(page): AppQuery<Pagination>,
) -> Result<AppJson<Page<AuditEntry>>, AppError> {
    Ok(AppJson(account::activity(&state, &me.user, page).await?))
}

/// Starts MFA enrolment: a secret and an `otpauth://` URI.
#[utoipa::path(post, path = "/api/auth/mfa/setup", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The pending secret", body = MfaSetup),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "MFA is already on", body = Problem, content_type = "application/problem+json")))]
async fn mfa_setup(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<MfaSetup>, AppError> {
    Ok(AppJson(mfa::setup(&state, &me.user).await?))
}

/// Turns MFA on with a first code; answers the recovery codes (shown once).
#[utoipa::path(post, path = "/api/auth/mfa/enable", tag = "auth", security(("bearerAuth" = [])), request_body = MfaEnable, responses(
    (status = 200, description = "MFA is on", body = RecoveryCodes),
    (status = 403, description = "Wrong password", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Not signed in, or a wrong code", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "No pending setup, or already on", body = Problem, content_type = "application/problem+json")))]
async fn mfa_enable(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
    AppJson(req): AppJson<MfaEnable>,
) -> Result<AppJson<RecoveryCodes>, AppError> {
    Ok(AppJson(
        mfa::enable(&state, &meta, &me.user, &req.password, &req.code).await?,
    ))
}

/// Turns MFA off with the password and a code.
#[utoipa::path(post, path = "/api/auth/mfa/disable", tag = "auth", security(("bearerAuth" = [])), request_body = MfaDisable, responses(
    (status = 204, description = "MFA is off"),
    (status = 401, description = "Not signed in, or a wrong code", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Wrong password", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "MFA is not on", body = Problem, content_type = "application/problem+json")))]
async fn mfa_disable(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
    AppJson(req): AppJson<MfaDisable>,
) -> Result<StatusCode, AppError> {
    mfa::disable(&state, &meta, &me.user, &req.password, &req.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in developer's profile.
#[utoipa::path(get, path = "/api/developer/me", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The developer profile", body = DeveloperProfile),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not a developer", body = Problem, content_type = "application/problem+json")))]
async fn developer_me(DeveloperUser(me): DeveloperUser) -> AppJson<serde_json::Value> {
    AppJson(me.user.profile)
}

/// Updates the signed-in developer's profile (`null` clears a field).
#[utoipa::path(patch, path = "/api/developer/me", tag = "auth", security(("bearerAuth" = [])), request_body = DeveloperProfile, responses(
    (status = 200, description = "The updated profile", body = DeveloperProfile),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not a developer", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid or unknown fields", body = Problem, content_type = "application/problem+json")))]
async fn update_developer_me(
    State(state): State<AppState>,
    meta: RequestMeta,
    DeveloperUser(me): DeveloperUser,
    AppJson(patch): AppJson<serde_json::Value>,
) -> Result<AppJson<serde_json::Value>, AppError> {
    let mut user = me.user;
    user.profile =
        profile::merge(user.role, &user.profile, &patch, "").map_err(AppError::Validation)?;
    account::save_profile(&state, &meta, &user).await?;
    Ok(AppJson(user.profile))
}
