//! HTTP plumbing shared by every domain: extractors, middleware, the layer stack.

pub mod auth;
pub mod client;
pub mod json;
pub mod layers;
pub mod middleware;
pub mod pagination;
pub mod request_id;
pub mod web;
