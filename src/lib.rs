//! Autorisen: the backend and web host of the CapeControl platform.
//!
//! The library builds the whole service; `main.rs` only parses the command line. Tests build
//! the app on a listener of their own (`127.0.0.1:0`).

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod domains;
pub mod edge;
pub mod error;
pub mod http;
pub mod jobs;
pub mod kv;
pub mod mail;
pub mod openapi;
pub mod state;
pub mod telemetry;
