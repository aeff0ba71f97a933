//! Liveness, readiness, health and a truthful status of the service.

mod routes;
mod service;
pub mod types;

use crate::{
    domain::Domain,
    edge::policy::{RouteClass::Exempt, RouteRule},
};

/// The registry entry. Probes are exempt from the edge: never limited, banned or shed.
pub const DOMAIN: Domain = Domain {
    routes: routes::routes,
    route_classes: &[
        RouteRule::exact("/health", Exempt),
        RouteRule::exact("/alive", Exempt),
        RouteRule::exact("/ready", Exempt),
        RouteRule::exact("/api/health", Exempt),
        RouteRule::exact("/version.json", Exempt),
    ],
    ..Domain::new("health")
};
