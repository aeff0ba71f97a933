//! The handle kept in `AppState`: the transport, the worker's wake-up call and its counters.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use tokio::sync::Notify;

use super::transport::MailTransport;
use crate::config::{Environment, MailSettings};

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
    wake: Notify,
    counters: Counters,
    running: AtomicBool,
}

/// Access to outgoing mail. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailer(Arc<Shared>);

impl Mailer {
    /// Builds the transport that the settings name (creating the `file://` folder).
    pub fn new(settings: &MailSettings, env: Environment) -> anyhow::Result<Self> {
        Ok(Self::with_transport(super::build::transport(
            settings, env,
        )?))
    }

    /// A mailer over any transport.
    pub fn with_transport(transport: Arc<dyn MailTransport>) -> Self {
        Self(Arc::new(Shared {
            transport,
            wake: Notify::new(),
            counters: Counters::default(),
            running: AtomicBool::new(false),
        }))
    }

    /// Asks the worker to look at the outbox now rather than at its next poll. Call it after
    /// committing a transaction that queued mail; it is only a hint, polling finds it anyway.
    pub fn wake(&self) {
        self.0.wake.notify_one();
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

    /// Whether a delivery worker is running in this process.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }

    pub(super) fn transport(&self) -> &dyn MailTransport {
        self.0.transport.as_ref()
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.0.counters
    }

    pub(super) async fn woken(&self) {
        self.0.wake.notified().await;
    }

    pub(super) fn set_running(&self, running: bool) {
        self.0.running.store(running, Ordering::Relaxed);
    }
}
