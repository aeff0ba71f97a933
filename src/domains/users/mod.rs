//! Accounts: who a user is (email, names, role, role-specific profile) and how it is validated.
//!
//! This domain alone has SQL on the `users` table. Its stores are private: other domains call
//! [`service`], including for the reads they join to their own rows ([`service::joined`]).

pub mod create_admin;
pub mod import;
pub mod password;
pub mod profile;
pub mod service;
mod store;
pub mod types;

pub use types::{Email, Role, User, UserView};

/// The registry entry: a service other domains call; no routes of its own.
pub const DOMAIN: crate::domain::Domain = crate::domain::Domain::new("users");
