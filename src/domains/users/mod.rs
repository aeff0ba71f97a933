//! Accounts: who a user is (email, names, role, role-specific profile) and how it is validated.

pub mod create_admin;
pub mod import;
pub mod password;
pub mod profile;
pub mod service;
pub mod store;
pub mod types;

pub use types::{Email, Role, User, UserView};

/// The registry entry: a service other domains call; no routes of its own.
pub const DOMAIN: crate::domain::Domain = crate::domain::Domain::new("users");
