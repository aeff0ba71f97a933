//! Operator endpoints of the job runner: list and retry jobs, see and run schedules.

mod routes;
mod service;
pub mod types;

pub use routes::routes;
