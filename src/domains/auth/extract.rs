//! Who is calling: `AuthUser` (any signed-in user), `DeveloperUser`, `AdminUser`.
//!
//! Every authenticated request verifies the JWT (HS256 only, issuer, audience, expiry, type) and
//! then checks, in ONE indexed query (session and user by primary key), that the session is not
//! revoked or expired, the user is active, and the token's role and epoch are still current. So
//! logout, password reset, role change, deactivation and revocation take effect on every
//! instance at once, not when the token expires. No cache: the query is the source of truth.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue},
    response::{IntoResponse, Response},
};

use super::{keys::ACCESS_TYPE, sessions};
use crate::{
    db::types::now_micros,
    domains::users::{Role, User},
    error::AppError,
    state::AppState,
};

/// A signed-in user with a live session.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user as stored now.
    pub user: User,
    /// The session the access token belongs to.
    pub session_id: String,
}

/// A signed-in developer (403 for other roles).
#[derive(Debug, Clone)]
pub struct DeveloperUser(pub AuthUser);

/// A signed-in admin (403 for other roles).
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

/// Why authentication failed: a problem document, with `WWW-Authenticate` on 401.
#[derive(Debug)]
pub struct AuthRejection(pub AppError);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self.0, AppError::Unauthorized(_));
        let mut res = self.0.into_response();
        if unauthorized {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<AppError> for AuthRejection {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

fn refused() -> AuthRejection {
    AuthRejection(AppError::Unauthorized(
        "A valid access token is required (Authorization: Bearer …).".into(),
    ))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<AuthUser>() {
            return Ok(done.clone());
        }
        let token = bearer(parts).ok_or_else(refused)?;
        let claims = state
            .get::<super::Auth>()
            .keys
            .verify(token, ACCESS_TYPE)
            .ok_or_else(refused)?;
        let live = sessions::live(state.db.pool(), &claims.sid, &claims.sub)
            .await
            .map_err(AppError::from)?
            .ok_or_else(refused)?;
        let current = live.revoked_at.is_none()
            && live.expires_at > now_micros()
            && live.user.is_active
            && live.user.role == claims.role
            && live.user.token_epoch == claims.ver;
        if !current {
            return Err(refused());
        }
        tracing::Span::current().record("user_id", live.user.id.as_str());
        let me = AuthUser {
            user: live.user,
            session_id: claims.sid,
        };
        parts.extensions.insert(me.clone());
        Ok(me)
    }
}

async fn with_role(
    parts: &mut Parts,
    state: &AppState,
    role: Role,
    what: &str,
) -> Result<AuthUser, AuthRejection> {
    let me = AuthUser::from_request_parts(parts, state).await?;
    if me.user.role != role {
        return Err(AuthRejection(AppError::Forbidden(format!(
            "Only {what} may do this."
        ))));
    }
    Ok(me)
}

impl FromRequestParts<AppState> for DeveloperUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        with_role(parts, state, Role::Developer, "developers")
            .await
            .map(Self)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        with_role(parts, state, Role::Admin, "admins")
            .await
            .map(Self)
    }
}
