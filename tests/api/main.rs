//! The integration tests: the real app over real HTTP, each test on SQLite and on PostgreSQL.

mod helpers;

mod cli;
mod errors;
mod health;
mod openapi;
mod schema;
mod shutdown;
mod web;
