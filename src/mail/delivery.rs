//! The `mail.send` job: delivers one outbox message and tells the runner whether to retry.
//!
//! Delivery is at least once per attempt and exactly once in practice: the runner leases the job
//! (renewing the lease while a send is in progress), so a second instance only takes a message
//! over when the first one died. A queued message survives any crash and is sent later.
//!
//! A delivery is remembered in memory before the outbox is told (`Mailer::delivered`), so when
//! the database refuses the `sent` update (a full disk, a read-only file) the retries of that
//! job only retry the update: a message is delivered again only if the process also restarts
//! before the update succeeds (once per restart, and never beyond `MAIL_MAX_ATTEMPTS`).

use std::{sync::atomic::Ordering, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    layout::Rendered,
    mailer::Mailer,
    store::{self, Delivery},
    transport::{MailError, Outgoing},
};
use crate::{
    config::MailSettings,
    db::{types::now_micros, Db},
    jobs::{Handler, JobContext, JobError, Registry},
};

/// The kind of the job that delivers one outbox message.
pub const SEND_JOB: &str = "mail.send";

/// Stored error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// What a `mail.send` job carries: the outbox id (plus recipient and template, for admins).
/// The body and its links stay in the outbox row.
#[derive(Debug, Deserialize)]
struct Payload {
    outbox_id: String,
}

/// Registers `mail.send`, with `MAIL_MAX_ATTEMPTS` attempts and `MAIL_RETRY_BASE_MS` backoff.
pub fn register(registry: &mut Registry, db: Db, mailer: Mailer, settings: &MailSettings) {
    let handler = SendMail {
        db,
        mailer,
        timeout: settings.send_timeout,
    };
    registry
        .register(SEND_JOB, handler)
        .max_attempts(settings.max_attempts)
        .retry_base(settings.retry_base);
}

struct SendMail {
    db: Db,
    mailer: Mailer,
    timeout: Duration,
}

impl Handler for SendMail {
    fn run(&self, job: JobContext) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(self.deliver(job))
    }

    fn abandoned(&self, job: JobContext) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Ok(Payload { outbox_id: id }) = job.payload_as() else {
                return;
            };
            self.mailer
                .counters()
                .failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(id, "mail failed for good: its last attempt never finished");
            if self.mailer.is_delivered_unrecorded(&id) {
                // Delivered; only recording it kept failing. Never call it failed.
                if let Err(e) = self.record_sent(&id).await {
                    tracing::warn!(id, error = ?e, "cannot mark the delivered mail sent");
                }
                return;
            }
            let error = "attempts exhausted";
            if let Err(e) = store::mark_failed(self.db.pool(), &id, error).await {
                tracing::warn!(id, error = %e, "cannot mark the mail failed");
            }
        })
    }
}

impl SendMail {
    async fn deliver(&self, job: JobContext) -> Result<(), JobError> {
        let Payload { outbox_id: id } = job.payload_as()?;
        if self.mailer.is_delivered_unrecorded(&id) {
            // An earlier attempt in this process delivered it and could not record that (the
            // database refused the write): record it now, never deliver it again.
            return self.record_sent(&id).await;
        }
        let pool = self.db.pool();
        let outbox_error = |e: sqlx::Error| self.outbox_error(e);
        let Some(delivery) = store::start(pool, &id).await.map_err(outbox_error)? else {
            return match store::status(pool, &id)
                .await
                .map_err(outbox_error)?
                .as_deref()
            {
                // An earlier attempt sent it, then lost its claim before recording that.
                Some("sent") => Ok(()),
                Some(status) => Err(JobError::Permanent(format!(
                    "the message is {status} and its links were dropped; it cannot be sent again"
                ))),
                None => Err(JobError::Permanent("no such outbox message".into())),
            };
        };
        let counters = self.mailer.counters();
        let (attempts, template) = (delivery.attempts, delivery.template.as_str());
        match self.send(&id, &delivery).await {
            Ok(()) => {
                self.mailer.delivered(&id);
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(id, template, attempts, "mail sent");
                self.record_sent(&id).await
            }
            Err(MailError::Transient(e)) if !job.is_last_attempt() => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(id, template, attempts, error = %e, "mail not sent; will retry");
                let e = truncate(&e);
                store::mark_retry(pool, &id, &e)
                    .await
                    .map_err(outbox_error)?;
                Err(JobError::Retryable(e))
            }
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(id, template, attempts, error = %e, "mail failed for good");
                let e = truncate(&e.to_string());
                store::mark_failed(pool, &id, &e)
                    .await
                    .map_err(outbox_error)?;
                Err(JobError::Permanent(e))
            }
        }
    }

    /// Marks a delivered message sent; while that fails, the job is retried and only retries
    /// this update.
    async fn record_sent(&self, id: &str) -> Result<(), JobError> {
        store::mark_sent(self.db.pool(), id, now_micros())
            .await
            .map_err(|e| self.outbox_error(e))?;
        self.mailer.recorded(id);
        Ok(())
    }

    /// The outbox could not be read or written: the attempt is retried (and a storage fault is
    /// noted for health).
    fn outbox_error(&self, e: sqlx::Error) -> JobError {
        JobError::Retryable(format!("mail outbox: {}", self.db.note(e)))
    }

    async fn send(&self, id: &str, delivery: &Delivery) -> Result<(), MailError> {
        let payload = delivery
            .payload
            .as_deref()
            .ok_or_else(|| MailError::Permanent("the payload is gone".into()))?;
        let rendered: Rendered = serde_json::from_str(payload)
            .map_err(|e| MailError::Permanent(format!("unreadable payload: {e}")))?;
        let mail = Outgoing {
            id: id.to_owned(),
            to: delivery.recipient.clone(),
            template: delivery.template.clone(),
            rendered,
        };
        tokio::time::timeout(self.timeout, self.mailer.transport().send(&mail))
            .await
            .unwrap_or_else(|_| {
                Err(MailError::Transient(format!(
                    "no answer within {}s",
                    self.timeout.as_secs()
                )))
            })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}
