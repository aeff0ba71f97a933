//! Liveness, readiness, health and a truthful status of the service.

mod routes;
mod service;
pub mod types;

pub use routes::routes;
