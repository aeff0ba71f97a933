//! Operator endpoints of the edge protection: rate-limit counters and bans.

mod routes;
mod service;
pub mod types;

pub use routes::routes;
