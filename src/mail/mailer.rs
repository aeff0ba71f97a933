//! The handle kept in `AppState`: the transport, the runner's wake-up call and the counters.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use super::transport::MailTransport;
use crate::{
    config::{Environment, MailSettings},
    jobs::Wakeup,
};

/// Delivery counters since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailStats {
    /// Messages delivered.
    pub sent: u64,
    /// Failed attempts that were rescheduled.
    pub retried: u64,
    /// Messages given up on.
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) failed: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    transport: Arc<dyn MailTransport>,
    wakeup: Wakeup,
    counters: Counters,
    /// Outbox ids the transport accepted but the outbox does not say `sent` yet (the update
    /// failed): a later attempt records the delivery instead of sending again.
    unrecorded: Mutex<HashSet<String>>,
}

/// Access to outgoing mail. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailer(Arc<Shared>);

impl Mailer {
    /// Builds the transport that the settings name (creating the `file://` folder); `wakeup` is
    /// the job runner's, which delivers the messages.
    pub fn new(settings: &MailSettings, env: Environment, wakeup: Wakeup) -> anyhow::Result<Self> {
        Ok(Self::with_transport(
            super::build::transport(settings, env)?,
            wakeup,
        ))
    }

    /// A mailer over any transport.
    pub fn with_transport(transport: Arc<dyn MailTransport>, wakeup: Wakeup) -> Self {
        Self(Arc::new(Shared {
            transport,
            wakeup,
            counters: Counters::default(),
            unrecorded: Mutex::default(),
        }))
    }

    /// Asks the job runner to deliver now rather than at its next poll. Call it after committing
    /// a transaction that queued mail; it is only a hint, polling finds the messages anyway.
    pub fn wake(&self) {
        self.0.wakeup.wake();
    }

    /// What was delivered, retried and given up on so far.
    pub fn stats(&self) -> MailStats {
        let c = &self.0.counters;
        MailStats {
            sent: c.sent.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// `smtp`, `file` or `log`.
    pub fn transport_kind(&self) -> &'static str {
        self.0.transport.kind()
    }

    /// Whether a job runner (which delivers mail) is running in this process.
    pub fn is_running(&self) -> bool {
        self.0.wakeup.is_running()
    }

    pub(super) fn transport(&self) -> &dyn MailTransport {
        self.0.transport.as_ref()
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.0.counters
    }

    fn unrecorded(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.unrecorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that message `id` was delivered, before the outbox records it.
    pub(super) fn delivered(&self, id: &str) {
        self.unrecorded().insert(id.to_owned());
    }

    /// Whether message `id` was delivered by this process and not yet recorded as sent.
    pub(super) fn is_delivered_unrecorded(&self, id: &str) -> bool {
        self.unrecorded().contains(id)
    }

    /// The outbox now records message `id` as sent.
    pub(super) fn recorded(&self, id: &str) {
        self.unrecorded().remove(id);
    }
}
