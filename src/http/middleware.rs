//! Per-request middleware: request id, tracing span, access log, version headers, problem bodies.

use std::{net::SocketAddr, time::Instant};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::{field::Empty, Instrument};

use crate::{
    db::{Db, StorageFault},
    edge::{policy::RouteClass, Edge},
    error::{default_detail, problem_response},
};

use super::{
    client::{ClientAddr, TrustedProxies},
    request_id::{self, REQUEST_ID_HEADER},
    security::{secure, SecurityHeaders},
};

/// What the outermost middleware needs: the response stamp, the trusted proxies and the
/// security-header policy.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The app headers.
    pub stamp: ResponseStamp,
    /// Whose forwarding headers resolve the client address.
    pub proxies: TrustedProxies,
    /// Whether HSTS is sent.
    pub security: SecurityHeaders,
    /// The edge, whose route table says which paths are logged at debug level only: the
    /// exempt ones (probes, docs).
    pub edge: Edge,
}

/// Values stamped on every response (`X-App-Version`, `X-App-Commit`, `X-App-Env`).
#[derive(Debug, Clone)]
pub struct ResponseStamp {
    version: HeaderValue,
    commit: HeaderValue,
    env: HeaderValue,
}

impl ResponseStamp {
    /// Builds the header values once; unprintable values become `unknown`.
    pub fn new(version: &str, commit: &str, env: &str) -> Self {
        let value =
            |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("unknown"));
        Self {
            version: value(version),
            commit: value(commit),
            env: value(env),
        }
    }
}

/// The route template a request matched, left on the response for the access log.
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Outermost middleware, one layer for what every response needs: client address, request id,
/// span, access log line, problem bodies for layer-made errors, security and app headers. (Each
/// separate middleware layer costs about 5% of the throughput of a trivial route.)
pub async fn request_context(
    State(ctx): State<RequestContext>,
    mut req: Request,
    next: Next,
) -> Response {
    let stamp = &ctx.stamp;
    let started = Instant::now();
    let request_id = request_id::from_headers(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    // Resolved once here, so the access log, the limits and the handlers agree on the client.
    let client = peer.map(|peer| ctx.proxies.resolve(peer, req.headers()));
    if let Some(client) = client {
        req.extensions_mut().insert(ClientAddr(client));
    }
    let client = client.map(|c| c.to_string()).unwrap_or_default();
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = Empty,
        user_id = Empty,
    );

    let credentialed = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key(header::COOKIE);
    // Error bodies are made inside the scope, so that they carry the request id.
    let mut response = request_id::scope(request_id.clone(), async move {
        problem_body(next.run(req).await)
    })
    .instrument(span.clone())
    .await;
    secure(
        ctx.security,
        credentialed,
        path.starts_with("/api/"),
        &mut response,
    );

    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("(unmatched)", |r| r.0.as_str())
        .to_owned();
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        let quiet = ctx.edge.routes().class_of(&path) == Some(RouteClass::Exempt);
        if quiet && status < 500 {
            tracing::debug!(%route, %path, status, latency_ms, %client, %peer, "request finished");
        } else {
            tracing::info!(%route, %path, status, latency_ms, %client, %peer, "request finished");
        }
    });

    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    headers.insert("x-app-version", stamp.version.clone());
    headers.insert("x-app-commit", stamp.commit.clone());
    headers.insert("x-app-env", stamp.env.clone());
    response
}

/// Route-level middleware: records the matched route template in the span and on the response.
pub async fn record_route(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let route = matched.map(|m| m.as_str().to_owned());
    if let Some(route) = &route {
        tracing::Span::current().record("route", route.as_str());
    }
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

/// Tells the database's fault signal that a response failed on storage (a full disk, a
/// read-only file), so that health reports the service unhealthy until writes work again.
pub async fn note_storage_faults(State(db): State<Db>, response: Response) -> Response {
    if response.extensions().get::<StorageFault>().is_some() {
        db.faults().record();
    }
    response
}

/// Turns any error response without a document of its own (a 405 from the router, a 408 or
/// 413 from a layer) into one, keeping its status and headers such as `Allow`.
pub fn problem_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Only bodies made by layers and the router (empty or plain text) are replaced; a handler's
    // own document, such as the 503 health report, is kept.
    let made_by_a_layer = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|ct| ct.as_bytes().starts_with(b"text/plain"));
    if !made_by_a_layer {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = problem_response(status, default_detail(status), None);
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in problem_parts.headers.iter() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}
