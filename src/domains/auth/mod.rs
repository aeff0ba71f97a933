//! Authentication: registration, login, tokens, sessions, lockout, MFA, reset and verification.

pub mod account;
pub mod cookie;
pub mod hashing;
pub mod keys;
pub mod links;
pub mod lockout;
pub mod mfa;
pub mod opaque;
pub mod service;
pub mod sessions;
pub mod types;

mod account_routes;
mod compat;
mod routes;

use std::sync::Arc;

use crate::config::Config;

pub use routes::routes;

/// The keys and the password hasher, built once from the configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Signing keys, each derived from `SECRET_KEY` for one purpose.
    pub keys: Arc<keys::Keys>,
    /// The bounded password hasher.
    pub hasher: hashing::Hasher,
}

impl Auth {
    /// Derives the keys and sizes the hasher from `config`.
    pub fn new(config: &Config) -> Self {
        let issuer = config.public_base_url.origin().ascii_serialization();
        Self {
            keys: Arc::new(keys::Keys::new(config.secret_key.expose(), &issuer)),
            hasher: hashing::Hasher::new(config.auth.password_hash_concurrency),
        }
    }
}
