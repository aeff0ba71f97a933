//! Response hardening: the security headers on every response, and `no-store` on answers that
//! depend on the caller's credentials.

use axum::{
    http::{header, HeaderValue},
    response::Response,
};

/// The policy of HTML pages (the docs, the web app): their own scripts only; inline styles
/// (Swagger UI and React set some), `data:` images (Swagger UI's icons), same-origin calls.
pub const HTML_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// The policy of everything else (JSON, problems, assets): load nothing, never be framed.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

const HSTS: &str = "max-age=63072000; includeSubDomains";

const CROSS_ORIGIN_OPENER_POLICY: header::HeaderName =
    header::HeaderName::from_static("cross-origin-opener-policy");
const PERMISSIONS_POLICY: header::HeaderName =
    header::HeaderName::from_static("permissions-policy");

/// Whether HSTS is sent (only when the service is reached over HTTPS).
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeaders {
    /// `PUBLIC_BASE_URL` is https.
    pub hsts: bool,
}

/// Adds the security headers to `response`. `credentialed`: the request carried
/// `Authorization` or a cookie; `api`: its path is under `/api/`.
pub fn secure(policy: SecurityHeaders, credentialed: bool, api: bool, response: &mut Response) {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::REFERRER_POLICY,
        "strict-origin-when-cross-origin",
    );
    set(h, CROSS_ORIGIN_OPENER_POLICY, "same-origin");
    set(
        h,
        PERMISSIONS_POLICY,
        "camera=(), microphone=(), geolocation=()",
    );
    if policy.hsts {
        set(h, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            if html { HTML_CSP } else { API_CSP },
        );
    }
    // A shared cache must never hand one caller's answer (or rate-limit state) to another.
    if (credentialed || api) && !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
}
