//! The values of the job runner: a job as queued and as stored, its states, its errors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Attempts a job gets when its kind and its enqueuer say nothing else.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Queued,
    /// Claimed by a runner until its lease ends.
    Running,
    /// The last attempt failed; another is scheduled at `run_at`.
    Failed,
    /// Given up on: attempts exhausted, a permanent error, or no handler for its kind.
    Dead,
    /// Finished successfully.
    Done,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Failed,
        Self::Dead,
        Self::Done,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Done => "done",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The registered kind that runs it (`mail.send`).
    pub kind: String,
    /// Its parameters: ids and safe data only, never a secret (admins see it).
    pub payload: serde_json::Value,
    /// When set, queuing a second job with the same key creates nothing.
    pub idempotency_key: Option<String>,
    /// Attempts before it is given up on (a kind registered with its own limit overrides it).
    pub max_attempts: u32,
    /// When it may run first; now when `None`.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A job of `kind` with `payload`, to run now, with the default attempts and no key.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            idempotency_key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
        }
    }

    /// The same job with an idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id (UUIDv7).
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its parameters.
    pub payload: serde_json::Value,
    /// Its idempotency key, if it was queued with one.
    pub idempotency_key: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it may run (next).
    pub run_at: DateTime<Utc>,
    /// Until when its current runner holds it (running jobs).
    pub lease_until: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended (`done` or `dead`).
    pub finished_at: Option<DateTime<Utc>>,
}

/// What the admin operations on jobs can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// No job has this id.
    #[error("no such job")]
    UnknownJob,
    /// No schedule of this name is declared in this build.
    #[error("no schedule named `{0}`")]
    UnknownSchedule(String),
    /// Only `failed` and `dead` jobs can be retried.
    #[error("the job is {0}; only failed or dead jobs can be retried")]
    NotRetryable(JobState),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
