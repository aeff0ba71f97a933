//! Operator endpoints of the job runner: list and retry jobs, see and run schedules.

mod routes;
mod service;
pub mod types;

use crate::domain::Domain;

/// The registry entry.
pub const DOMAIN: Domain = Domain {
    routes: routes::routes,
    ..Domain::new("ops")
};
