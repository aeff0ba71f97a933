//! Auth handlers: register, login, MFA step, refresh, logout, reset and verification links.

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::audit::RequestMeta,
    error::{AppError, Problem},
    http::json::{self, AppJson},
    state::AppState,
};

use super::{
    cookie::{self, FromBrowser},
    extract::AuthUser,
    links, service,
    types::{
        Accepted, LoginRequest, LoginResponse, MfaVerify, RefreshRequest, RegisterRequest,
        ResetConfirm, ResetRequest, TokenResponse, VerifyConfirm,
    },
};

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(mfa_verify))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm))
        .routes(routes!(verify_request))
        .routes(routes!(verify_confirm))
}

/// Answers tokens with the refresh token also set as the browser cookie.
pub(super) fn with_cookie(
    state: &AppState,
    status: StatusCode,
    tokens: impl serde::Serialize,
    refresh: Option<&str>,
) -> Response {
    let mut res = (status, AppJson(tokens)).into_response();
    if let Some(refresh) = refresh {
        let max_age = state
            .config
            .domain::<super::settings::AuthSettings>()
            .refresh_token_ttl
            .as_secs();
        res.headers_mut().insert(
            header::SET_COOKIE,
            cookie::set(&state.config, refresh, max_age),
        );
    }
    res
}

/// Answers a token pair: the refresh token in the cookie, and in the body only for a client that
/// is not a browser (see [`FromBrowser`]).
fn tokens_answer(
    state: &AppState,
    status: StatusCode,
    browser: FromBrowser,
    mut tokens: TokenResponse,
) -> Response {
    let refresh = tokens.refresh_token.clone();
    if browser.0 {
        tokens.refresh_token = None;
    }
    with_cookie(state, status, tokens, refresh.as_deref())
}

fn cleared(state: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie::clear(&state.config));
    res
}

/// Creates a customer or developer account and logs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Registered and logged in; a verification email is queued", body = TokenResponse),
    (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid fields, weak password, or a role that cannot be registered", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn register(
    State(state): State<AppState>,
    meta: RequestMeta,
    browser: FromBrowser,
    AppJson(req): AppJson<RegisterRequest>,
) -> Result<Response, AppError> {
    let tokens = service::register(&state, &meta, req).await?;
    Ok(tokens_answer(&state, StatusCode::CREATED, browser, tokens))
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Tokens, or an MFA challenge", body = LoginResponse),
    (status = 401, description = "Wrong email or password (one answer for both)", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "The account is locked for a while (see Retry-After)", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    browser: FromBrowser,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, AppError> {
    let (mut answer, refresh) = service::login(&state, &meta, &req.email, &req.password).await?;
    if let (FromBrowser(true), LoginResponse::Tokens(tokens)) = (browser, &mut answer) {
        tokens.refresh_token = None;
    }
    Ok(with_cookie(
        &state,
        StatusCode::OK,
        answer,
        refresh.as_deref(),
    ))
}

/// Completes a login with a TOTP or recovery code.
#[utoipa::path(post, path = "/api/auth/mfa/verify", tag = "auth", request_body = MfaVerify, responses(
    (status = 200, description = "Logged in", body = TokenResponse),
    (status = 401, description = "Wrong or reused code, or an expired MFA token", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many wrong codes (see Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn mfa_verify(
    State(state): State<AppState>,
    meta: RequestMeta,
    browser: FromBrowser,
    AppJson(req): AppJson<MfaVerify>,
) -> Result<Response, AppError> {
    let tokens = super::mfa::verify(&state, &meta, &req.mfa_token, &req.code).await?;
    Ok(tokens_answer(&state, StatusCode::OK, browser, tokens))
}

/// Exchanges a refresh token (JSON body, or the cookie with a same-origin `Origin`) for a new pair.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body(content = Option<RefreshRequest>, description = "Omit to use the cookie"), responses(
    (status = 200, description = "A new token pair; the old refresh token is spent", body = TokenResponse),
    (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Cookie used without an allowed Origin (CSRF)", body = Problem, content_type = "application/problem+json")))]
async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    browser: FromBrowser,
    body: Bytes,
) -> Result<Response, AppError> {
    // No body, or a JSON `null`: the cookie carries the token.
    let sent = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        json::parse::<Option<RefreshRequest>>(&body)?
    } else {
        None
    };
    let token = if let Some(sent) = sent {
        sent.refresh_token
    } else {
        let token = cookie::read(&state.config, &headers)
            .ok_or_else(|| AppError::Unauthorized("No refresh token was sent.".into()))?;
        if !cookie::origin_allowed(&state.config, &headers) {
            return Err(AppError::Forbidden(
                "The refresh cookie may only be used from the web app's own origin.".into(),
            ));
        }
        token
    };
    let tokens = service::refresh(&state, &meta, &token).await?;
    Ok(tokens_answer(&state, StatusCode::OK, browser, tokens))
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 204, description = "Logged out; the access and refresh tokens stop working"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
) -> Result<Response, AppError> {
    service::logout(&state, &meta, &me.user, &me.session_id).await?;
    Ok(cleared(&state))
}

/// Ends every session of the user.
#[utoipa::path(post, path = "/api/auth/logout-all", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 204, description = "Every session ended"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn logout_all(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
) -> Result<Response, AppError> {
    service::logout_all(&state, &meta, &me.user).await?;
    Ok(cleared(&state))
}

const RESET_ACCEPTED: Accepted = Accepted {
    status: "accepted",
    detail: "If an account uses this address, a reset link is on its way.",
};

/// Asks for a password-reset link; the answer is the same whether or not the account exists.
#[utoipa::path(post, path = "/api/auth/password-reset/request", tag = "auth", request_body = ResetRequest, responses(
    (status = 202, description = "Accepted (always)", body = Accepted)))]
async fn reset_request(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<ResetRequest>,
) -> Result<(StatusCode, AppJson<Accepted>), AppError> {
    links::request_reset(&state, &meta, &req.email).await?;
    Ok((StatusCode::ACCEPTED, AppJson(RESET_ACCEPTED)))
}

/// Sets a new password with the token from a reset link; ends every session.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm, responses(
    (status = 204, description = "Password changed; every session ended"),
    (status = 401, description = "Invalid, expired or used token", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "A weak password", body = Problem, content_type = "application/problem+json")))]
async fn reset_confirm(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<ResetConfirm>,
) -> Result<StatusCode, AppError> {
    links::confirm_reset(&state, &meta, &req.token, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification link to the signed-in user.
#[utoipa::path(post, path = "/api/auth/verify-email/request", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 202, description = "A verification email is queued", body = Accepted),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Already verified", body = Problem, content_type = "application/problem+json")))]
async fn verify_request(
    State(state): State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
) -> Result<(StatusCode, AppJson<Accepted>), AppError> {
    links::request_verification(&state, &meta, &me.user).await?;
    Ok((
        StatusCode::ACCEPTED,
        AppJson(Accepted {
            status: "accepted",
            detail: "A verification link is on its way.",
        }),
    ))
}

/// Confirms the email address with the token from its link.
#[utoipa::path(post, path = "/api/auth/verify-email/confirm", tag = "auth", request_body = VerifyConfirm, responses(
    (status = 204, description = "Email verified"),
    (status = 401, description = "Invalid, expired or used token", body = Problem, content_type = "application/problem+json")))]
async fn verify_confirm(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<VerifyConfirm>,
) -> Result<StatusCode, AppError> {
    links::confirm_verification(&state, &meta, &req.token).await?;
    Ok(StatusCode::NO_CONTENT)
}
