//! The integration tests: the real app over real HTTP, each test on SQLite and on PostgreSQL.

mod helpers;
mod smtp_sink;

mod cli;
mod errors;
mod health;
mod mail;
mod openapi;
mod schema;
mod shutdown;
mod web;
