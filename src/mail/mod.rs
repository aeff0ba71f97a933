//! Outgoing mail: messages are written to the `mail_outbox` table in the same transaction as the
//! change that causes them, each with a `mail.send` job that the job runner runs (see `delivery`).
//!
//! After committing such a transaction, call [`Mailer::wake`] (`state.mail.wake()`) so the runner
//! sends at once instead of at its next poll.

mod build;
pub mod delivery;
pub mod layout;
mod mailer;
mod smtp;
mod store;
pub mod transport;

pub use delivery::SEND_JOB;
pub use layout::Rendered;
pub use mailer::{MailStats, Mailer};
pub use transport::{MailError, MailTransport, Outgoing};

use crate::{
    db::types::{new_id, now_micros},
    jobs::{self, NewJob},
};

/// A message a domain sends: a stable name (for the outbox, logs and admins) and its words in
/// the branded [`layout`]. Each domain keeps its own messages (e.g. `domains/auth/emails.rs`).
pub trait Message {
    /// The stable template name stored in the outbox (`password_reset`).
    fn name(&self) -> &'static str;
    /// Subject, text and HTML.
    fn render(&self) -> Rendered;
}

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email<T> {
    /// The recipient's address (already validated).
    pub to: String,
    /// What to send.
    pub template: T,
}

/// Queues `email` on `conn`, which should be the transaction of the change that causes it, so
/// that the message is sent if and only if the change commits. Its `mail.send` job carries only
/// the outbox id, recipient and template: the body and its links stay in the outbox row.
///
/// The message is rendered now, so it says what was true when it was caused; the rendered body
/// (links with tokens) is cleared from the outbox once sent or given up.
pub async fn enqueue<T: Message>(
    conn: &mut sqlx::AnyConnection,
    email: &Email<T>,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(&email.template.render())
        .map_err(|e| sqlx::Error::Encode(e.into()))?;
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
