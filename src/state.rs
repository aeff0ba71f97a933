//! Application state: what every handler may reach, in a module of its own so that domains take
//! it without importing the assembly (`app`).
//!
//! The platform's plumbing (configuration, database, Redis, edge, mail, jobs) sits in named
//! fields. What a domain builds for itself at start (keys, clients, caches) is kept in a small
//! map keyed by type, filled by the domain's `provide` hook in the registry, so adding a domain
//! never adds a field here: `state.get::<Auth>()`.

use std::{
    any::{Any, TypeId},
    sync::{Arc, OnceLock, Weak},
    time::Instant,
};

use chrono::{DateTime, Utc};

use crate::{config::Config, db::Db, edge::Edge, jobs::Jobs, kv::Kv, mail::Mailer};

/// Everything a handler may need: one `Arc`, so the per-request clones axum makes cost a single
/// reference-count increment. Fields are reached through `Deref` (`state.db`, `state.config`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Wraps the services built by the assembly.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database pool.
    pub db: Db,
    /// Redis, when configured.
    pub kv: Option<Kv>,
    /// Rate limits, bans and in-flight caps.
    pub edge: Edge,
    /// When this process started serving (for uptime).
    pub started: Instant,
    /// The same moment as a UTC date-time.
    pub started_at: DateTime<Utc>,
    /// Whether a built web app is being served at `/`.
    pub web_app: bool,
    /// Outgoing mail: call `mail.wake()` after committing a transaction that queued mail.
    pub mail: Mailer,
    /// Background jobs: queue them in a transaction, then `jobs.wake()` after committing.
    pub jobs: Jobs,
    /// What each domain built for itself at start.
    pub provided: Provided,
    /// Each domain's report of the features it runs, for `/api/status`.
    pub features: Vec<FeatureReport>,
    /// The clock date-dependent rules read (the system's; tests move it).
    pub clock: crate::clock::Clock,
}

/// A domain's report of which of its features are configured and running.
pub type FeatureReport = fn(&AppState) -> Vec<(&'static str, bool)>;

impl Services {
    /// The value of type `T` a domain provided at start.
    ///
    /// # Panics
    /// When no domain provided one: a wiring mistake that every test of that domain shows.
    pub fn get<T: Any + Send + Sync>(&self) -> &T {
        self.provided.get::<T>().unwrap_or_else(|| {
            panic!(
                "no domain provided a {}; add it in the domain's `provide` hook",
                std::any::type_name::<T>()
            )
        })
    }
}

/// Values keyed by their type; a handful of entries, so a linear scan beats hashing.
#[derive(Default)]
pub struct Provided(Vec<(TypeId, Arc<dyn Any + Send + Sync>)>);

impl Provided {
    /// Keeps `value`, replacing an earlier one of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.0.retain(|(t, _)| *t != id);
        self.0.push((id, Arc::new(value)));
    }

    /// The value of type `T`, if one was provided.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for Provided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provided({} values)", self.0.len())
    }
}

/// The state as background job handlers see it: they are registered before the state exists,
/// and must not keep it alive after the app is gone (a weak reference, set once at start).
#[derive(Clone, Default)]
pub struct LateState(Arc<OnceLock<Weak<Services>>>);

impl LateState {
    /// The state, once the app is built and while it is alive.
    pub fn get(&self) -> Option<AppState> {
        self.0.get()?.upgrade().map(AppState)
    }

    /// The state, for a job: while the app is not (or no longer) running the job is retried.
    pub fn for_job(&self) -> Result<AppState, crate::jobs::JobError> {
        self.get()
            .ok_or_else(|| crate::jobs::JobError::Retryable("the app is not running".into()))
    }

    /// Points at `state`; later calls do nothing.
    pub fn set(&self, state: &AppState) {
        let _ = self.0.set(Arc::downgrade(&state.0));
    }
}

impl std::fmt::Debug for LateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateState")
    }
}
