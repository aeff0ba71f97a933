//! The edge guard every non-exempt request passes: load shedding, the per-client in-flight cap,
//! bans, probe scoring and the rate limits, with their headers on the response.

use std::net::{IpAddr, Ipv4Addr};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::Response,
};

use crate::http::client::ClientAddr;

use super::{
    abuse::{PROBE_POINTS, RATE_LIMITED_POINTS},
    conn::Full,
    headers,
    policy::{is_probe, RouteClass},
    verdict::client_network,
    Admission, Edge,
};

/// The middleware (see the module documentation).
pub async fn guard(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let class = edge.routes().class_of(path);
    if class == Some(RouteClass::Exempt) {
        return next.run(req).await;
    }
    // One client's network (an IPv6 /64), so rotating addresses within it escapes nothing.
    let ip = client_network(
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0),
    );
    let _in_flight = match edge.conn.enter(ip) {
        Ok(permit) => permit,
        Err(Full::Instance) => {
            return headers::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is at capacity; retry shortly.",
                1,
            )
        }
        Err(Full::Client) => {
            return headers::retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests from this client are in progress; retry once they finish.",
                1,
            )
        }
    };
    if let Some(secs) = edge.bans.retry_after(ip) {
        return banned(secs);
    }
    if is_probe(path) {
        if let Some(secs) = edge
            .offend(ip, PROBE_POINTS, "asked for vulnerability-scanner paths")
            .await
        {
            return banned(secs);
        }
    }
    if class == Some(RouteClass::Webhook) {
        return next.run(req).await;
    }
    let admission = edge.check_ip(ip, class == Some(RouteClass::Auth)).await;
    if matches!(admission, Admission::Refused { .. }) {
        if let Some(secs) = edge
            .offend(ip, RATE_LIMITED_POINTS, "repeatedly over its rate limit")
            .await
        {
            return banned(secs);
        }
    }
    match admission.into_response() {
        Ok(rate_headers) => {
            let mut response = next.run(req).await;
            rate_headers.apply(&mut response);
            response
        }
        Err(refusal) => refusal,
    }
}

fn banned(secs: u64) -> Response {
    headers::retry_later(
        StatusCode::FORBIDDEN,
        "This client address is temporarily banned after repeated abuse.",
        secs,
    )
}
