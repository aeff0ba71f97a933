//! The integration tests: the real app over real HTTP, each test on SQLite and on PostgreSQL.

mod helpers;

mod admin;
mod auth;
mod auth_helpers;
mod cli;
mod compat;
mod errors;
mod health;
mod identity_cli;
mod links;
mod lockout;
mod mfa;
mod openapi;
mod schema;
mod sessions;
mod shutdown;
mod web;
