//! Operator endpoints of the edge protection: rate-limit counters and bans.

mod jobs;
mod routes;
mod service;
pub mod types;

use crate::{domain::Domain, state::AppState};

/// The registry entry.
pub const DOMAIN: Domain = Domain {
    routes: routes::routes,
    jobs: jobs::register,
    features,
    ..Domain::new("protection")
};

fn features(state: &AppState) -> Vec<(&'static str, bool)> {
    let edge = &state.config.edge;
    vec![
        ("abuse_bans", edge.abuse.threshold > 0),
        ("rate_limiting", edge.rate_limiting()),
        (
            "rate_limiting_shared",
            edge.rate_limiting() && state.kv.is_some(),
        ),
        ("trusted_proxies", !edge.trusted_proxies.is_empty()),
    ]
}
