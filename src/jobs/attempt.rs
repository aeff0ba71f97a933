//! One attempt at a claimed job: run its handler under a heartbeat, then record the outcome
//! while the claim still holds.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt};
use rand::Rng;
use tracing::Instrument;

use super::{
    handle::Jobs,
    options::{micros, RunnerOptions},
    registry::{JobContext, JobError},
    store::{self, Claimed, Outcome},
};
use crate::db::types::now_micros;

/// Stored error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// Runs the claimed job once; returns when its retry is due, if one was scheduled.
pub(super) async fn attempt(
    jobs: Jobs,
    options: Arc<RunnerOptions>,
    claimed: Claimed,
    token: String,
) -> Option<i64> {
    let span = tracing::info_span!("job", id = %claimed.id, kind = %claimed.kind,
        attempt = claimed.attempts);
    async move {
        let Some(kind) = jobs.kind(&claimed.kind) else {
            let error = format!(
                "no handler for kind `{}` on instance {}; retry it once an instance that knows \
                 this kind runs",
                claimed.kind, options.instance_id
            );
            tracing::error!(%error, "job given up");
            let max = claimed.max_attempts;
            finish(&jobs, &claimed, &token, max, Outcome::Dead { error }).await;
            return None;
        };
        let (handler, limits) = (kind.handler.clone(), kind.limits);
        let max = limits.attempts().map_or(claimed.max_attempts, i64::from);
        let context = JobContext {
            id: claimed.id.clone(),
            kind: claimed.kind.clone(),
            payload: serde_json::from_str(&claimed.payload).unwrap_or_default(),
            attempt: count(claimed.attempts),
            max_attempts: count(max),
        };
        if claimed.attempts > max {
            // Claimed with no attempt left: the last attempt's runner died before recording its
            // outcome (or the kind's limit was lowered since).
            handler.abandoned(context).await;
            let error = format!(
                "no attempts left: this would be attempt {} of {max} (the last one's runner \
                 stopped before recording its outcome)",
                claimed.attempts
            );
            tracing::error!(%error, "job given up");
            finish(&jobs, &claimed, &token, max, Outcome::Dead { error }).await;
            return None;
        }
        let result = heartbeat(&jobs, &options, &claimed.id, &token, handler.run(context)).await;
        let (outcome, retry_at) = match result {
            Ok(()) => {
                tracing::debug!("job done");
                (Outcome::Done, None)
            }
            Err(JobError::Retryable(error)) if claimed.attempts < max => {
                let base = limits.base().unwrap_or(options.retry_base);
                let delay = backoff(base, claimed.attempts, options.max_backoff);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                let run_at = now_micros().saturating_add(micros(delay));
                let error = truncate(&error);
                (Outcome::Retry { run_at, error }, Some(run_at))
            }
            Err(e) => {
                tracing::error!(error = %e, "job failed for good");
                let error = truncate(&e.to_string());
                (Outcome::Dead { error }, None)
            }
        };
        finish(&jobs, &claimed, &token, max, outcome).await;
        retry_at
    }
    .instrument(span)
    .await
}

/// Drives `work` while renewing the lease every third of it, so a long job is not taken over
/// while its runner lives. A panic in the handler is a retryable failure.
async fn heartbeat(
    jobs: &Jobs,
    options: &RunnerOptions,
    id: &str,
    token: &str,
    work: BoxFuture<'_, Result<(), JobError>>,
) -> Result<(), JobError> {
    let work = AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(work);
    let mut beat = tokio::time::interval((options.lease / 3).max(Duration::from_millis(10)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            done = &mut work => {
                return done.unwrap_or_else(|_| Err(JobError::Retryable("the handler panicked".into())));
            }
            _ = beat.tick() => {
                let until = now_micros().saturating_add(micros(options.lease));
                match store::extend(jobs.db().pool(), id, token, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("job lease lost while running; its outcome will not be recorded"),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the job's lease"),
                }
            }
        }
    }
}

/// Records the outcome under the claim; a lost claim or a database failure is only logged (the
/// job then runs again after its lease).
async fn finish(jobs: &Jobs, claimed: &Claimed, token: &str, max: i64, outcome: Outcome) {
    match store::record(jobs.db().pool(), &claimed.id, token, max, &outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("job claim lost before its outcome was recorded"),
        Err(e) => {
            let e = jobs.db().note(e);
            tracing::error!(error = %e, "cannot record the job's outcome; it runs again")
        }
    }
}

/// `base × 2^(attempt-1)`, capped, then scaled by a random factor in [0.5, 1] so that jobs that
/// failed together do not retry together.
pub(super) fn backoff(base: Duration, attempt: i64, cap: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let delay = base.saturating_mul(1 << exponent).min(cap);
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let d = backoff(base, attempt, cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 60, cap) <= cap);
    }
}
