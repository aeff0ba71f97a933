//! The refresh-token cookie for browsers: HttpOnly, SameSite=Strict, scoped to `/api/auth`,
//! Secure when the service is reached over HTTPS; and the Origin check that guards its use.

use axum::http::{header, HeaderMap, HeaderValue};

use crate::config::Config;

/// The cookie's name.
pub const NAME: &str = "autorisen_refresh";

/// A `Set-Cookie` value carrying `token` for `max_age` seconds (0 clears it).
pub fn set(config: &Config, token: &str, max_age: u64) -> HeaderValue {
    let secure = if config.is_https() { "; Secure" } else { "" };
    let value = format!(
        "{NAME}={token}; Path=/api/auth; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Clears the cookie.
pub fn clear(config: &Config) -> HeaderValue {
    set(config, "", 0)
}

/// The refresh token in the request's cookies, if any.
pub fn read(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
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
