//! How a runner behaves, and the instance id that names it.

use std::time::Duration;

use crate::config::JobsSettings;

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Names this instance in claim tokens (`leased_by`) and logs.
    pub instance_id: String,
    /// How long a claim holds without a heartbeat; a running job renews it every third of it.
    pub lease: Duration,
    /// How often the database is asked for due jobs when nobody wakes the runner.
    pub poll_interval: Duration,
    /// Jobs run at once.
    pub concurrency: usize,
    /// The first retry delay (doubling per failure) for kinds that set none.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
    /// On stop, how long jobs in hand may finish before they are aborted.
    pub stop_grace: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            instance_id: instance_id(),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            concurrency: 4,
            retry_base: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(10),
        }
    }
}

impl RunnerOptions {
    /// The options `JOBS_*` ask for, with the defaults for the rest.
    pub fn from_settings(settings: &JobsSettings) -> Self {
        Self {
            lease: settings.lease,
            poll_interval: settings.poll_interval,
            concurrency: settings.concurrency,
            ..Self::default()
        }
    }
}

/// A name for this process that no other instance shares: its pid and a random suffix.
pub fn instance_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &random[..8])
}

/// A duration in whole microseconds, saturating.
pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
