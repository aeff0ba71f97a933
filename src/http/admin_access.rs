//! `AdminAccess`: the one extractor guarding operator endpoints.
//!
//! Until the identity domain provides `AdminUser`, the caller proves itself with
//! `Authorization: Bearer <ADMIN_API_TOKEN>`. Switching to admin users is a change to this file
//! only: every admin handler takes an `AdminAccess`.

use axum::{extract::FromRequestParts, http::request::Parts};
use subtle::ConstantTimeEq;

use crate::{app::AppState, error::AppError};

/// Proof that the caller is an operator.
#[derive(Debug, Clone, Copy)]
pub struct AdminAccess;

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some(expected) = &state.config.admin_api_token else {
            return Err(AppError::Forbidden(
                "The admin API is disabled: ADMIN_API_TOKEN is not configured.".into(),
            ));
        };
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| AppError::Unauthorized("An admin bearer token is required.".into()))?;
        // Constant time, so the token cannot be guessed byte by byte from response times.
        if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(Self)
        } else {
            Err(AppError::Unauthorized(
                "The admin bearer token is not valid.".into(),
            ))
        }
    }
}
