//! HTTP plumbing shared by every domain: extractors, middleware, the layer stack, the server.

pub mod client;
pub mod cors;
pub mod json;
pub mod layers;
pub mod middleware;
pub mod pagination;
pub mod query;
pub mod request_id;
pub mod security;
pub mod server;
pub mod validate;
pub mod web;
