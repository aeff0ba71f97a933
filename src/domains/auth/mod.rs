//! Authentication: registration, login, tokens, sessions, lockout, MFA, reset and verification.

pub mod account;
pub mod budget;
pub mod challenges;
pub mod cookie;
pub mod emails;
pub mod extract;
pub mod guards;
pub mod hashing;
pub mod jobs;
pub mod keys;
pub mod links;
pub mod lockout;
pub mod mfa;
pub mod opaque;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod types;

mod account_routes;
mod compat;
mod routes;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::{
    config::Config,
    domain::Domain,
    edge::policy::{RouteClass::Auth as AuthClass, RouteRule},
    state::{AppState, Provided},
};

/// The registry entry. Credential and code endpoints are in the edge's `auth` class.
pub const DOMAIN: Domain = Domain {
    settings: Some(settings::read),
    provide,
    routes,
    route_classes: &[
        RouteRule::exact("/api/auth/login", AuthClass),
        RouteRule::exact("/api/auth/register", AuthClass),
        RouteRule::exact("/api/auth/mfa/verify", AuthClass),
        RouteRule::exact("/api/auth/mfa/enable", AuthClass),
        RouteRule::exact("/api/auth/mfa/disable", AuthClass),
        RouteRule::exact("/api/auth/v2/validate-email", AuthClass),
        RouteRule::exact("/api/auth/v2/login", AuthClass),
        RouteRule::exact("/api/auth/v2/register", AuthClass),
        // Unauthenticated and costly (zxcvbn): an oracle for guessing, so the auth budget.
        RouteRule::exact("/api/auth/v2/validate-password", AuthClass),
        RouteRule::subtree("/api/auth/password-reset", AuthClass),
        RouteRule::subtree("/api/auth/verify-email", AuthClass),
    ],
    features: |state| vec![("auth", state.provided.get::<Auth>().is_some())],
    jobs: jobs::register,
    ..Domain::new("auth")
};

/// Every route of the domain: tokens and flows, the signed-in account, the compatibility paths.
fn routes() -> OpenApiRouter<AppState> {
    routes::routes()
        .merge(account_routes::routes())
        .merge(compat::routes())
}

fn provide(config: &Config, provided: &mut Provided) -> anyhow::Result<()> {
    provided.insert(Auth::new(config));
    Ok(())
}

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
            hasher: hashing::Hasher::new(
                config
                    .domain::<settings::AuthSettings>()
                    .password_hash_concurrency,
            ),
        }
    }
}
