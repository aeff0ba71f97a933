//! The job runner: every background task of the service, leased, retried and visible to admins.
//!
//! A domain queues work with [`Jobs::enqueue`] (or [`enqueue`]) **inside the transaction of the
//! change that causes it**, then calls [`Jobs::wake`] after committing. A [`Runner`] per instance
//! claims due jobs with a conditional update and a lease, runs the [`Handler`] registered for
//! their kind, and records the outcome only while its claim still holds; a failure is retried
//! with exponential backoff until the job's attempts run out (`dead`). Recurring work is declared
//! as a [`Schedule`]; each period is claimed by exactly one instance. See `docs/jobs.md`.
//!
//! Plumbing: this module knows the database and nothing of the domains that use it.

mod attempt;
mod handle;
mod options;
mod periods;
mod registry;
mod runner;
mod schedule;
mod store;
mod types;
pub mod upkeep;

pub use handle::{Jobs, ScheduleStatus};
pub use options::{instance_id, RunnerOptions};
pub use registry::{from_fn, Handler, JobContext, JobError, KindLimits, Registry, Wakeup};
pub use runner::Runner;
pub use schedule::{Every, Schedule};
pub use store::enqueue;
pub use types::{Job, JobState, JobsError, NewJob, DEFAULT_MAX_ATTEMPTS};
