//! The integration tests: the real app over real HTTP, each test on SQLite and on PostgreSQL.

mod helpers;
mod smtp_sink;

mod admin;
mod auth;
mod auth_helpers;
mod bans;
mod billing;
mod billing_refunds;
mod billing_stripe;
mod cli;
mod compat;
mod connections;
mod contract;
mod errors;
mod faults;
mod guesses;
mod hardening;
mod health;
mod identity_cli;
mod instances;
mod jobs;
mod links;
mod lockout;
mod mail;
mod mfa;
mod openapi;
mod overload;
mod rate_limits;
mod schema;
mod sessions;
mod shutdown;
mod storage_faults;
mod web;
