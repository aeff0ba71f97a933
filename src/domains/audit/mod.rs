//! The security audit trail: append-only `audit_events`, written in the transaction of the
//! change it records. Never holds a password, token or code.

mod service;
mod store;
pub mod types;

pub use service::{list, record};
pub use types::{Event, Filter, Outcome, RequestMeta};

/// The registry entry: a service other domains call; no routes of its own.
pub const DOMAIN: crate::domain::Domain = crate::domain::Domain::new("audit");
