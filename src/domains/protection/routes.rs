//! `/api/admin/rate-limits` and `/api/admin/bans`: admins only ([`AdminUser`]).

use axum::{
    extract::{DefaultBodyLimit, Path, State},
    http::StatusCode,
    Json,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::{audit::RequestMeta, auth::extract::AdminUser},
    error::{AppError, Problem},
    http::json::AppJson,
    state::AppState,
};

use super::{
    service,
    types::{BanList, BanView, NewBan, RateLimitReport},
};

/// A ban request is a few hundred bytes; nothing larger is read.
const BAN_BODY_LIMIT: usize = 4 * 1024;

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rate_limits))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(list_bans, create_ban))
                .layer(DefaultBodyLimit::max(BAN_BODY_LIMIT)),
        )
        .routes(routes!(lift_ban))
}

/// Each rate-limit policy, its mode, and its counts since this instance started.
#[utoipa::path(get, path = "/api/admin/rate-limits", tag = "admin",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Policies and counts", body = RateLimitReport),
        (status = 401, description = "No or a wrong admin token", body = Problem, content_type = "application/problem+json")))]
async fn rate_limits(_: AdminUser, State(state): State<AppState>) -> Json<RateLimitReport> {
    Json(service::rate_limits(&state))
}

/// The running bans.
#[utoipa::path(get, path = "/api/admin/bans", tag = "admin",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Running bans", body = BanList),
        (status = 401, description = "No or a wrong admin token", body = Problem, content_type = "application/problem+json")))]
async fn list_bans(_: AdminUser, State(state): State<AppState>) -> Result<Json<BanList>, AppError> {
    Ok(Json(BanList {
        bans: service::bans(&state).await?,
    }))
}

/// Bans a client address by hand (escalating like automatic bans).
#[utoipa::path(post, path = "/api/admin/bans", tag = "admin",
    security(("bearerAuth" = [])),
    request_body = NewBan,
    responses(
        (status = 201, description = "Banned", body = BanView),
        (status = 401, description = "No or a wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The address is the caller's own", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 4 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, all listed", body = Problem, content_type = "application/problem+json")))]
async fn create_ban(
    _: AdminUser,
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(new): AppJson<NewBan>,
) -> Result<(StatusCode, Json<BanView>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(service::ban(&state, &meta.ip, new).await?),
    ))
}

/// Lifts a ban now (the address keeps its strike level, so a next ban is longer).
#[utoipa::path(delete, path = "/api/admin/bans/{ip}", tag = "admin",
    security(("bearerAuth" = [])),
    params(("ip" = String, Path, description = "The banned address")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 401, description = "No or a wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not banned", body = Problem, content_type = "application/problem+json")))]
async fn lift_ban(
    _: AdminUser,
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<StatusCode, AppError> {
    service::lift(&state, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}
