//! The integration tests: the real app over real HTTP, each test on SQLite and on PostgreSQL.

mod helpers;
mod smtp_sink;

mod bans;
mod cli;
mod errors;
mod hardening;
mod health;
mod instances;
mod mail;
mod openapi;
mod rate_limits;
mod schema;
mod shutdown;
mod web;
