//! The IETF `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers-10)
//! and the refusal answers.

use std::fmt::Write;

use axum::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponseParts, Response, ResponseParts},
};

use crate::error::problem_response;

use super::{policy::Policy, verdict::Verdict};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `"general";r=599;t=1, …` for the decisions of a request.
pub fn state_value(policies: &[Policy], verdict: &Verdict) -> Option<HeaderValue> {
    let mut out = String::with_capacity(32 * verdict.decisions.len());
    for (i, d) in &verdict.decisions {
        let sep = if out.is_empty() { "" } else { ", " };
        let _ = write!(
            out,
            "{sep}\"{}\";r={};t={}",
            policies[*i].name, d.remaining, d.reset_secs
        );
    }
    HeaderValue::from_str(&out).ok().filter(|_| !out.is_empty())
}

/// The rate-limit headers of an admitted request, to put on its response.
#[derive(Debug, Default)]
pub struct RateHeaders(pub HeaderMap);

impl RateHeaders {
    /// The headers for `verdict`, with the precomputed policy value.
    pub fn new(policy: Option<&HeaderValue>, policies: &[Policy], verdict: &Verdict) -> Self {
        let mut map = HeaderMap::with_capacity(2);
        if let Some(p) = policy {
            map.insert(RATELIMIT_POLICY, p.clone());
        }
        if let Some(s) = state_value(policies, verdict) {
            map.insert(RATELIMIT, s);
        }
        Self(map)
    }

    /// Adds them to `response`.
    pub fn apply(self, response: &mut Response) {
        response.headers_mut().extend(self.0);
    }
}

impl IntoResponseParts for RateHeaders {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.headers_mut().extend(self.0);
        Ok(res)
    }
}

/// 429 problem with `Retry-After` (never earlier than the `t` of a refusing policy), naming
/// the refusing policies.
pub fn refused(headers: RateHeaders, policies: &[String], retry: u64) -> Response {
    let detail = format!(
        "Rate limit `{}` exceeded; retry in {retry} s.",
        policies.join("`, `")
    );
    let mut res = problem_response(StatusCode::TOO_MANY_REQUESTS, detail, None);
    headers.apply(&mut res);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    res
}

/// A problem answer with `Retry-After`.
pub fn retry_later(status: StatusCode, detail: &str, secs: u64) -> Response {
    let mut res = problem_response(status, detail, None);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}
