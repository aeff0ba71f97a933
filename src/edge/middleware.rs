//! The edge guard every non-exempt request passes: load shedding, the per-client in-flight cap,
//! bans, probe scoring and the rate limits, with their headers on the response.
//!
//! A tower service rather than `axum::middleware::from_fn`, which clones and boxes the stack
//! beneath it on every request: an exempt request goes straight through, and only a request that
//! waits for a decision takes a clone of the inner service.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr},
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::http::client::ClientAddr;

use super::{
    abuse::{PROBE_POINTS, RATE_LIMITED_POINTS},
    headers,
    policy::{is_probe, RouteClass},
    shed::{Reason, Shed},
    verdict::client_network,
    Admission, Edge,
};

/// The guard as a layer (see the module documentation).
#[derive(Debug, Clone)]
pub struct GuardLayer(Edge);

impl GuardLayer {
    /// The guard of `edge`.
    pub fn new(edge: Edge) -> Self {
        Self(edge)
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            edge: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`GuardLayer`].
#[derive(Debug, Clone)]
pub struct Guard<S> {
    edge: Edge,
    inner: S,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let class = self.edge.routes().class_of(req.uri().path());
        if class == Some(RouteClass::Exempt) {
            // Boxed although it need not be: measured, returning the inner future unboxed made
            // the request's outer future larger, and copying it cost more than the box.
            let answer = self.inner.call(req);
            return Box::pin(async move {
                let Ok(response) = answer.await;
                Ok(response.into_response())
            });
        }
        // The clone that was made ready is the one called (tower's contract); it stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let edge = self.edge.clone();
        Box::pin(async move { Ok(guard(edge, class, req, inner).await) })
    }
}

/// Decides about a request that is not exempt and, when admitted, runs it through `inner`.
async fn guard<S>(edge: Edge, class: Option<RouteClass>, req: Request, mut inner: S) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    let path = req.uri().path();
    // One client's network (an IPv6 /64), so rotating addresses within it escapes nothing.
    let ip = client_network(
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0),
    );
    let _in_flight = match edge.enter(ip) {
        Ok(Ok(permit)) => permit,
        Err(reason) => return shed(&edge, reason),
        Ok(Err(())) => {
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
        return run(&mut inner, req).await;
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
            let mut response = run(&mut inner, req).await;
            rate_headers.apply(&mut response);
            response
        }
        Err(refusal) => refusal,
    }
}

async fn run<S>(inner: &mut S, req: Request) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    let Ok(response) = inner.call(req).await;
    response.into_response()
}

/// The 503 of a shed request: counted and summarised by [`super::shed::ShedLog`], marked
/// [`Shed`] so the access log does not write a line for each.
fn shed(edge: &Edge, reason: Reason) -> Response {
    edge.shed.note(reason);
    let (detail, secs) = match reason {
        Reason::InstanceFull | Reason::DatabaseQueue => {
            ("The service is at capacity; retry shortly.", 1)
        }
        Reason::DatabaseDown => ("The database is unavailable; retry shortly.", 5),
    };
    let mut response = headers::retry_later(StatusCode::SERVICE_UNAVAILABLE, detail, secs);
    response.extensions_mut().insert(Shed);
    response
}

fn banned(secs: u64) -> Response {
    headers::retry_later(
        StatusCode::FORBIDDEN,
        "This client address is temporarily banned after repeated abuse.",
        secs,
    )
}
