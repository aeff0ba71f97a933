//! Liveness, readiness, health and a truthful status of the service.

mod cache;
mod routes;
mod service;
pub mod settings;
pub mod types;

use crate::{
    config::Config,
    domain::Domain,
    edge::policy::{RouteClass::Exempt, RouteRule},
    state::Provided,
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
    settings: Some(settings::read),
    provide,
    ..Domain::new("health")
};

fn provide(config: &Config, provided: &mut Provided) -> anyhow::Result<()> {
    let ttl = config.domain::<settings::HealthSettings>().cache;
    provided.insert(cache::HealthCache::new(ttl));
    Ok(())
}
