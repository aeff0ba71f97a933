//! The Cape AI assistant (issue 10, first landing): the knowledge base admins keep and the
//! platform's own help ships in, searched with each database's full-text index; threads of
//! messages answered by a provider (today the built-in one, which answers from the knowledge base
//! with citations, without network); each message spends the caller's `ai` rate limit and one
//! `assistant_messages` use of their plan. See docs/assistant.md.

pub mod chunk;
pub mod compose;
pub mod help;
pub mod knowledge;
pub mod provider;
pub mod service;
pub mod terms;
pub mod types;

mod routes;
mod store;
mod thread_store;

use futures::future::BoxFuture;

use crate::{
    config::Config,
    domain::Domain,
    state::{AppState, Provided},
};

/// The registry entry. The `ai` rate limit is per user, spent by the message handlers, so the
/// assistant's paths keep the general class at the edge.
pub const DOMAIN: Domain = Domain {
    provide,
    routes: routes::routes,
    start,
    features,
    ..Domain::new("assistant")
};

fn provide(_: &Config, provided: &mut Provided) -> anyhow::Result<()> {
    provided.insert(provider::Provider::Builtin);
    Ok(())
}

/// Loads the shipped help into the knowledge base (idempotent: every instance may run it). A
/// failure is logged and the service starts anyway: everything but the help works, and the next
/// start loads it.
fn start(state: AppState) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        if let Err(e) = knowledge::load_help(&state).await {
            tracing::error!(error = ?e, "could not load the shipped help into the knowledge base");
        }
        Ok(())
    })
}

fn features(state: &AppState) -> Vec<(&'static str, bool)> {
    let provider = state.get::<provider::Provider>();
    vec![(
        "assistant_builtin",
        *provider == provider::Provider::Builtin,
    )]
}
