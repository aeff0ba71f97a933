//! Per-request middleware: request id, tracing span, access log, version headers, problem bodies.
//!
//! Written as tower services rather than `axum::middleware::from_fn`: a `from_fn` layer clones
//! and boxes the whole stack beneath it on every request, and boxes its future twice (measured
//! with callgrind: the three `from_fn` layers cost about a quarter of the instructions of
//! `GET /health`). These call the inner service directly, without cloning it.

use std::{
    convert::Infallible,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::{field::Empty, Instrument};

use crate::{
    db::{Db, StorageFault},
    edge::{policy::RouteClass, shed::Shed, Edge},
    error::{default_detail, problem_response},
};

use super::{
    client::{ClientAddr, TrustedProxies},
    request_id::{self, REQUEST_ID_HEADER},
    security::{secure, SecurityHeaders},
};

const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const X_APP_VERSION: HeaderName = HeaderName::from_static("x-app-version");
const X_APP_COMMIT: HeaderName = HeaderName::from_static("x-app-commit");
const X_APP_ENV: HeaderName = HeaderName::from_static("x-app-env");
/// Headers this layer and [`secure`] add at most (request id, 3 app, 7 security, cache); the
/// map is grown once for all of them rather than doubling several times.
const ADDED_HEADERS: usize = 12;

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

/// Where the route layer writes the route template a request matched, for the access log. A
/// slot in the request rather than a mark on the response: a request that times out, or whose
/// handler panics, has its response made by an outer layer, and its route must still be logged.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(Arc<std::sync::OnceLock<MatchedPath>>);

/// The outermost layer, one layer for what every response needs: client address, request id,
/// span, access log line, problem bodies for layer-made errors, security and app headers.
#[derive(Debug, Clone)]
pub struct RequestContextLayer(Arc<RequestContext>);

impl RequestContextLayer {
    /// The layer over `context`.
    pub fn new(context: RequestContext) -> Self {
        Self(Arc::new(context))
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService {
            ctx: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`RequestContextLayer`].
#[derive(Debug, Clone)]
pub struct RequestContextService<S> {
    ctx: Arc<RequestContext>,
    inner: S,
}

impl<S> Service<Request> for RequestContextService<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let ctx = self.ctx.clone();
        let started = Instant::now();
        let request_id = request_id::from_headers(req.headers());
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
        let route = RouteSlot::default();
        req.extensions_mut().insert(route.clone());
        let span = tracing::info_span!(
            "request",
            request_id = request_id.as_str(),
            method = req.method().as_str(),
            route = Empty,
            user_id = Empty,
        );
        let credentialed = req.headers().contains_key(header::AUTHORIZATION)
            || req.headers().contains_key(header::COOKIE);
        // The inner stack's synchronous part (CORS, routing) runs in the span and scope too.
        let inner =
            span.in_scope(|| request_id::sync_scope(request_id.clone(), || self.inner.call(req)));
        let scoped_id = request_id.clone();
        Box::pin(async move {
            // Error bodies are made inside the scope, so that they carry the request id.
            let response = request_id::scope(scoped_id, async move {
                let Ok(response) = inner.await;
                problem_body(response.into_response())
            })
            .instrument(span.clone())
            .await;
            let finished = Finished {
                route,
                started,
                request_id,
                path,
                client,
                peer,
                credentialed,
            };
            Ok(finished.respond(&ctx, &span, response))
        })
    }
}

/// What the access log and the response headers need once the inner stack has answered.
struct Finished {
    route: RouteSlot,
    started: Instant,
    request_id: String,
    path: String,
    client: Option<IpAddr>,
    peer: Option<IpAddr>,
    credentialed: bool,
}

impl Finished {
    /// Logs the request and adds the security, request-id and app headers.
    fn respond(
        self,
        ctx: &RequestContext,
        span: &tracing::Span,
        mut response: Response,
    ) -> Response {
        response.headers_mut().reserve(ADDED_HEADERS);
        secure(
            ctx.security,
            self.credentialed,
            self.path.starts_with("/api/"),
            &mut response,
        );
        let route = self.route.0.get().map_or("(unmatched)", |r| r.as_str());
        let status = response.status().as_u16();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        // Strings are logged as `str` values, which the JSON writer takes as they are (a `%`
        // value goes through `Debug` and `fmt`), and the addresses are formatted only when the
        // line is written: the same line for fewer instructions.
        let (client, peer) = (Shown(self.client), Shown(self.peer));
        let path = self.path.as_str();
        span.in_scope(|| {
            // Exempt paths (probes, docs) and shed requests, which the edge counts and
            // summarises itself (`edge::shed`), are logged at debug level only.
            let exempt = ctx.edge.routes().class_of(path) == Some(RouteClass::Exempt);
            let shed = response.extensions().get::<Shed>().is_some();
            if (exempt && status < 500) || shed {
                tracing::debug!(
                    route,
                    path,
                    status,
                    latency_ms,
                    client = client.to_string().as_str(),
                    peer = peer.to_string().as_str(),
                    "request finished"
                );
            } else {
                tracing::info!(
                    route,
                    path,
                    status,
                    latency_ms,
                    client = client.to_string().as_str(),
                    peer = peer.to_string().as_str(),
                    "request finished"
                );
            }
        });

        let stamp = &ctx.stamp;
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::try_from(self.request_id) {
            headers.insert(X_REQUEST_ID, v);
        }
        headers.insert(X_APP_VERSION, stamp.version.clone());
        headers.insert(X_APP_COMMIT, stamp.commit.clone());
        headers.insert(X_APP_ENV, stamp.env.clone());
        response
    }
}

/// An optional value shown as itself, or as nothing when absent.
struct Shown<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// Route-level layer: records the matched route template in the span and the request's
/// [`RouteSlot`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRouteLayer;

impl<S> Layer<S> for RecordRouteLayer {
    type Service = RecordRoute<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRoute(inner)
    }
}

/// The service of [`RecordRouteLayer`].
#[derive(Debug, Clone)]
pub struct RecordRoute<S>(S);

impl<S> Service<Request> for RecordRoute<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(route) = req.extensions().get::<MatchedPath>() {
            tracing::Span::current().record("route", route.as_str());
            if let Some(slot) = req.extensions().get::<RouteSlot>() {
                let _ = slot.0.set(route.clone());
            }
        }
        self.0.call(req)
    }
}

/// Tells the database's fault signal that a response failed on storage (a full disk, a
/// read-only file), so that health reports the service unhealthy until writes work again.
pub async fn note_storage_faults(State(db): State<Db>, response: Response) -> Response {
    if response.extensions().get::<StorageFault>().is_some() {
        db.faults().record();
    }
    response
}

/// `Retry-After` of a request that timed out (`REQUEST_TIMEOUT_SECONDS`): seconds, long enough
/// for whatever held it up to clear.
const TIMEOUT_RETRY_AFTER: &str = "5";

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
    // The request timeout's 503 says when to come back, as every other 503 does.
    if status == StatusCode::SERVICE_UNAVAILABLE && !parts.headers.contains_key(header::RETRY_AFTER)
    {
        parts.headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(TIMEOUT_RETRY_AFTER),
        );
    }
    Response::from_parts(parts, body)
}
