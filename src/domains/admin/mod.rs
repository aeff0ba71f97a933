//! User management for admins: list, inspect, change role or status, revoke sessions, and read
//! the audit trail.

mod routes;
mod service;
mod store;
pub mod types;

pub use routes::routes;
