//! The refresh-token cookie for browsers: HttpOnly, SameSite=Strict, and the Origin check that
//! guards its use. Over HTTPS it is `__Host-autorisen_refresh` (Secure, `Path=/`, no Domain: the
//! browser binds it to this exact origin); over plain HTTP (development) it is
//! `autorisen_refresh`, scoped to `/api/auth`. Only the refresh route reads it.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderValue},
};

use crate::config::Config;

/// The cookie's name over plain HTTP.
pub const NAME: &str = "autorisen_refresh";
/// The cookie's name over HTTPS.
pub const HOST_NAME: &str = "__Host-autorisen_refresh";

/// The cookie's name and path for this service's scheme.
fn name_and_path(config: &Config) -> (&'static str, &'static str) {
    if config.is_https() {
        (HOST_NAME, "/")
    } else {
        (NAME, "/api/auth")
    }
}

/// A `Set-Cookie` value carrying `token` for `max_age` seconds (0 clears it).
pub fn set(config: &Config, token: &str, max_age: u64) -> HeaderValue {
    let (name, path) = name_and_path(config);
    let secure = if config.is_https() { "; Secure" } else { "" };
    let value = format!(
        "{name}={token}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Clears the cookie.
pub fn clear(config: &Config) -> HeaderValue {
    set(config, "", 0)
}

/// The refresh token in the request's cookies, if any.
pub fn read(config: &Config, headers: &HeaderMap) -> Option<String> {
    let (name, _) = name_and_path(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request's `Origin` is the service itself or an allowed CORS origin. A request
/// that relies on the cookie must pass this: a cross-site form cannot forge `Origin`.
pub fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin == config.public_base_url.origin().ascii_serialization()
        || config.cors_origins.iter().any(|o| o == origin)
}

/// Whether the request came from a browser (it carries `Origin`, as browsers send on every
/// cross-origin request and every POST): such a client gets its refresh token in the cookie
/// only, never in a body page scripts can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromBrowser(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for FromBrowser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.contains_key(header::ORIGIN)))
    }
}
