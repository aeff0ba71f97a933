//! The delivery worker: claims due outbox rows, sends them, and records the outcome.
//!
//! Delivery is at least once per claim and exactly once in practice: a claim is a conditional
//! update with a lease longer than the send timeout, so a second worker only takes a message over
//! when the first one died. A pending row survives any crash and is sent at the next start.

use std::{sync::atomic::Ordering, time::Duration};

use rand::{seq::SliceRandom, Rng};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    mailer::Mailer,
    store::{self, Claimed},
    templates,
    transport::{MailError, Outgoing},
    Template,
};
use crate::{
    config::MailSettings,
    db::{
        types::{new_id, now_micros},
        Db,
    },
};

/// Messages looked at per query.
const BATCH: i64 = 16;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Stored error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// A running worker; stop it with [`WorkerHandle::stop`]. Dropping it aborts the worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    grace: Duration,
}

impl WorkerHandle {
    /// Lets the message in hand finish (bounded by the send timeout), then stops.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(self.grace, &mut task).await.is_err() {
                tracing::warn!("mail worker did not stop in time; its claim will expire");
                task.abort();
            }
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the worker on the current runtime.
pub fn spawn(db: Db, mailer: Mailer, settings: &MailSettings) -> WorkerHandle {
    let (stop, stopped) = watch::channel(false);
    let worker = Worker {
        db,
        mailer,
        settings: settings.clone(),
    };
    worker.mailer.set_running(true);
    let task = tokio::spawn(worker.run(stopped));
    WorkerHandle {
        stop,
        task: Some(task),
        grace: settings.send_timeout + Duration::from_secs(1),
    }
}

struct Worker {
    db: Db,
    mailer: Mailer,
    settings: MailSettings,
}

impl Worker {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        tracing::info!(
            transport = self.mailer.transport_kind(),
            "mail worker started"
        );
        while !*stopped.borrow() {
            if let Err(e) = self.drain(&stopped).await {
                tracing::warn!(error = %e, "mail worker cannot read the outbox; will retry");
            }
            tokio::select! {
                _ = stopped.changed() => {}
                () = self.mailer.woken() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        self.mailer.set_running(false);
        tracing::info!("mail worker stopped");
    }

    /// Delivers every due message, batch after batch, until none is left or a stop is asked.
    async fn drain(&self, stopped: &watch::Receiver<bool>) -> Result<(), sqlx::Error> {
        loop {
            let mut ids = store::due_ids(self.db.pool(), now_micros(), BATCH).await?;
            if ids.is_empty() {
                return Ok(());
            }
            // Workers that see the same batch start at different rows, so they rarely collide.
            ids.shuffle(&mut rand::thread_rng());
            for id in ids {
                if *stopped.borrow() {
                    return Ok(());
                }
                self.deliver(&id).await?;
            }
        }
    }

    async fn deliver(&self, id: &str) -> Result<(), sqlx::Error> {
        let pool = self.db.pool();
        let token = new_id();
        let now = now_micros();
        let lease = micros(self.settings.send_timeout * 2 + Duration::from_secs(10));
        let Some(claimed) = store::claim(pool, id, &token, now, now + lease).await? else {
            return Ok(()); // another worker has it
        };
        let counters = self.mailer.counters();
        let max = i64::from(self.settings.max_attempts);
        let outcome = if claimed.attempts > max {
            Err(MailError::Permanent("attempts exhausted".into()))
        } else {
            self.send(&claimed).await
        };
        let (id, attempts, template) = (id, claimed.attempts, claimed.template.as_str());
        let recorded = match outcome {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(id, template, attempts, "mail sent");
                store::mark_sent(pool, id, &token, now_micros()).await?
            }
            Err(e) if matches!(e, MailError::Permanent(_)) || attempts >= max => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(id, template, attempts, error = %e, "mail failed for good");
                store::mark_failed(pool, id, &token, &truncate(&e.to_string())).await?
            }
            Err(e) => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                let delay = backoff(self.settings.retry_base, attempts);
                tracing::warn!(id, template, attempts, retry_in_ms = delay.as_millis() as u64,
                    error = %e, "mail not sent; will retry");
                let at = now_micros() + micros(delay);
                store::reschedule(pool, id, &token, at, &truncate(&e.to_string())).await?
            }
        };
        if !recorded {
            tracing::warn!(id, "mail claim expired before the outcome was recorded");
        }
        Ok(())
    }

    async fn send(&self, claimed: &Claimed) -> Result<(), MailError> {
        let payload = claimed
            .payload
            .as_deref()
            .ok_or_else(|| MailError::Permanent("the payload is gone".into()))?;
        let template: Template = serde_json::from_str(payload)
            .map_err(|e| MailError::Permanent(format!("unreadable payload: {e}")))?;
        let mail = Outgoing {
            id: claimed.id.clone(),
            to: claimed.recipient.clone(),
            template: claimed.template.clone(),
            rendered: templates::render(&template),
        };
        let timeout = self.settings.send_timeout;
        tokio::time::timeout(timeout, self.mailer.transport().send(&mail))
            .await
            .unwrap_or_else(|_| {
                Err(MailError::Transient(format!(
                    "no answer within {}s",
                    timeout.as_secs()
                )))
            })
    }
}

/// `base × 2^(attempt-1)`, capped, then scaled by a random factor in [0.5, 1] so that messages
/// that failed together do not retry together.
fn backoff(base: Duration, attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let delay = base.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
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
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let d = backoff(base, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 60) <= MAX_BACKOFF);
    }
}
