//! What a domain brings to the platform, as one value in the registry (`domains::DOMAINS`).
//!
//! The assembly (`app`) reads every domain's entry: its settings reader (for the configuration
//! and `config check`), what it builds at start (kept in the state by type), its routes, how the
//! edge classes its paths, its background jobs and schedules, and the features it reports in
//! `/api/status`. Adding a domain is its folder, its migrations, and one line in the registry.

use futures::future::BoxFuture;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    config::{Config, SettingsReader},
    edge::policy::RouteRule,
    jobs::Registry,
    state::{AppState, FeatureReport, LateState, Provided},
};

/// One domain's entry in the registry. Start from [`Domain::new`] and set what it has.
#[derive(Clone, Copy)]
pub struct Domain {
    /// A short lower-case name, for logs.
    pub name: &'static str,
    /// Reads, validates and redacts the domain's own settings.
    pub settings: Option<SettingsReader>,
    /// Builds what the domain keeps for the life of the process (keys, clients), reached by
    /// handlers with `state.get::<T>()`.
    pub provide: fn(&Config, &mut Provided) -> anyhow::Result<()>,
    /// The domain's routes, with their OpenAPI annotations.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// How the edge classes the domain's paths (exempt, auth, webhook); others are general.
    pub route_classes: &'static [RouteRule],
    /// Registers the domain's job kinds and schedules with the runner; handlers reach the state
    /// through the [`LateState`] once the app is built.
    pub jobs: fn(&mut Registry, &LateState),
    /// Runs once when the app is built, after migrations, before it serves: idempotent work that
    /// every instance may repeat (shipped data upserted by a key). A failure stops the start.
    pub start: fn(AppState) -> BoxFuture<'static, anyhow::Result<()>>,
    /// What `/api/status` reports under `features`, computed from what is configured and
    /// running.
    pub features: FeatureReport,
}

impl Domain {
    /// A domain called `name` that brings nothing yet.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            settings: None,
            provide: provide_nothing,
            routes: OpenApiRouter::new,
            route_classes: &[],
            jobs: no_jobs,
            start: start_nothing,
            features: no_features,
        }
    }
}

fn provide_nothing(_: &Config, _: &mut Provided) -> anyhow::Result<()> {
    Ok(())
}

fn no_jobs(_: &mut Registry, _: &LateState) {}

fn start_nothing(_: AppState) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async { Ok(()) })
}

fn no_features(_: &AppState) -> Vec<(&'static str, bool)> {
    Vec::new()
}
