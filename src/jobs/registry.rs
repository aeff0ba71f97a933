//! What this process can run: a handler per job kind, the declared schedules, and the wake-up
//! call that the handle, the mailer and the runner share.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::schedule::Schedule;

/// Why one attempt failed, and whether another may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again later (a timeout, a refused connection, a 4xx answer).
    #[error("{0}")]
    Retryable(String),
    /// Never retry (an unreadable payload, a record that is gone).
    #[error("{0}")]
    Permanent(String),
}

/// One attempt at a job, as its handler sees it.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its parameters.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed; a retryable failure at the last one ends the job `dead`.
    pub max_attempts: u32,
}

impl JobContext {
    /// Whether no retry follows a failure of this attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The payload as `T`; an unreadable payload is a permanent error.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| JobError::Permanent(format!("unreadable payload: {e}")))
    }
}

/// Runs the jobs of one kind. Implementations are shared between concurrent attempts.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt; an error says whether a retry may help.
    fn run(&self, job: JobContext) -> BoxFuture<'_, Result<(), JobError>>;

    /// Called instead of `run` when a job is claimed with no attempt left (its last attempt's
    /// runner died) and ends `dead`. Lets a handler clean up (the mailer drops the message's links).
    fn abandoned(&self, job: JobContext) -> BoxFuture<'_, ()> {
        let _ = job;
        Box::pin(async {})
    }
}

/// A handler made of an async closure (`from_fn(|job| async move { … })`).
pub fn from_fn<F, Fut>(f: F) -> impl Handler
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    FnHandler(f)
}

struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn run(&self, job: JobContext) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin((self.0)(job))
    }
}

/// Limits a kind sets for all its jobs, over what each job was queued with and the runner's
/// defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindLimits {
    max_attempts: Option<u32>,
    retry_base: Option<Duration>,
}

impl KindLimits {
    /// Every job of this kind gets `n` attempts (at least 1).
    pub fn max_attempts(&mut self, n: u32) -> &mut Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// The first retry of this kind waits `base` (then doubles), instead of the runner's base.
    pub fn retry_base(&mut self, base: Duration) -> &mut Self {
        self.retry_base = Some(base);
        self
    }

    pub(super) fn attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    pub(super) fn base(&self) -> Option<Duration> {
        self.retry_base
    }
}

pub(super) struct Kind {
    pub(super) handler: Arc<dyn Handler>,
    pub(super) limits: KindLimits,
}

/// The kinds and schedules this process runs; built once at start, then given to [`super::Jobs`].
#[derive(Default)]
pub struct Registry {
    pub(super) kinds: HashMap<String, Kind>,
    pub(super) schedules: Vec<Schedule>,
    pub(super) wakeup: Wakeup,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("Registry")
            .field("kinds", &kinds)
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobs of `kind` with `handler` (replacing an earlier registration); returns the kind's
    /// limits to adjust.
    pub fn register(&mut self, kind: impl Into<String>, handler: impl Handler) -> &mut KindLimits {
        let registered = Kind {
            handler: Arc::new(handler),
            limits: KindLimits::default(),
        };
        &mut self
            .kinds
            .entry(kind.into())
            .insert_entry(registered)
            .into_mut()
            .limits
    }

    /// Declares a recurring job (its kind must be registered too).
    pub fn schedule(&mut self, schedule: Schedule) -> &mut Self {
        self.schedules.retain(|s| s.name != schedule.name);
        self.schedules.push(schedule);
        self
    }

    /// The wake-up call of the runner that will use this registry, for whoever queues jobs.
    pub fn wakeup(&self) -> Wakeup {
        self.wakeup.clone()
    }
}

/// Wakes the runner now rather than at its next poll, and tells whether one runs. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<WakeupInner>);

#[derive(Debug, Default)]
struct WakeupInner {
    notify: Notify,
    running: AtomicBool,
}

impl Wakeup {
    /// Asks the runner to look for due jobs now. Only a hint: polling finds them anyway.
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    /// Whether a runner is running in this process.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }

    pub(super) async fn woken(&self) {
        self.0.notify.notified().await;
    }

    pub(super) fn set_running(&self, running: bool) {
        self.0.running.store(running, Ordering::Relaxed);
    }
}
