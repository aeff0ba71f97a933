//! User management for admins: list, inspect, change role or status, revoke sessions, and read
//! the audit trail.

mod routes;
mod service;
pub mod types;

use crate::domain::Domain;

/// The registry entry.
pub const DOMAIN: Domain = Domain {
    routes: routes::routes,
    ..Domain::new("admin")
};
