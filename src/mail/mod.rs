//! Outgoing mail: messages are written to the `mail_outbox` table in the same transaction as the
//! change that causes them, each with a `mail.send` job that the job runner runs (see `delivery`).
//!
//! After committing such a transaction, call [`Mailer::wake`] (`state.mail.wake()`) so the runner
//! sends at once instead of at its next poll.

mod build;
pub mod delivery;
mod mailer;
mod smtp;
mod store;
pub mod templates;
pub mod transport;

pub use delivery::SEND_JOB;
pub use mailer::{MailStats, Mailer};
pub use transport::{MailError, MailTransport, Outgoing};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    db::types::{new_id, now_micros},
    jobs::{self, NewJob},
};

/// What to send; each variant has a text and an HTML template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Template {
    /// Confirm an email address: `{PUBLIC_BASE_URL}/auth/verify-email?token=…`.
    VerifyEmail {
        /// The confirmation link, token included.
        link: String,
    },
    /// Reset a forgotten password: `{PUBLIC_BASE_URL}/auth/reset-password?token=…`.
    PasswordReset {
        /// The reset link, token included.
        link: String,
    },
    /// Notice that the password was changed.
    PasswordChanged,
    /// Notice that the account is locked after repeated failed logins.
    AccountLocked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
}

impl Template {
    /// The stable name stored in the outbox.
    pub fn name(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::PasswordReset { .. } => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::AccountLocked { .. } => "account_locked",
        }
    }
}

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient's address (already validated).
    pub to: String,
    /// What to send.
    pub template: Template,
}

/// Queues `email` on `conn`, which should be the transaction of the change that causes it, so
/// that the message is sent if and only if the change commits. Its `mail.send` job carries only
/// the outbox id, recipient and template: the body and its links stay in the outbox row.
pub async fn enqueue(conn: &mut sqlx::AnyConnection, email: &Email) -> Result<(), sqlx::Error> {
    let payload =
        serde_json::to_string(&email.template).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let id = new_id();
    let now = now_micros();
    sqlx::query(
        "INSERT INTO mail_outbox (id, recipient, template, payload, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
    )
    .bind(&id)
    .bind(&email.to)
    .bind(email.template.name())
    .bind(payload)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let job = serde_json::json!({
        "outbox_id": id,
        "to": email.to,
        "template": email.template.name(),
    });
    jobs::enqueue(
        conn,
        NewJob::new(SEND_JOB, job).idempotency_key(format!("mail:{id}")),
    )
    .await?;
    Ok(())
}
