//! The security audit trail: append-only `audit_events`, written in the transaction of the
//! change it records. Never holds a password, token or code.

pub mod store;
pub mod types;

pub use store::record;
pub use types::{Event, Outcome, RequestMeta};

/// The registry entry: a service other domains call; no routes of its own.
pub const DOMAIN: crate::domain::Domain = crate::domain::Domain::new("audit");
