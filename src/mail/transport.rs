//! Where rendered messages go: SMTP, `.eml` files, or the log. One small trait, three transports.

use std::{fmt, path::PathBuf};

use futures::future::BoxFuture;
use lettre::{
    message::{header::ContentType, Mailbox, MultiPart, SinglePart},
    AsyncFileTransport, AsyncTransport, Message, Tokio1Executor,
};

use super::layout::Rendered;

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message can never be sent (bad recipient address, unreadable payload): no retry.
    #[error("undeliverable: {0}")]
    Permanent(String),
    /// The transport failed this time (connection refused, 4xx answer, timeout): retry later.
    #[error("{0}")]
    Transient(String),
}

/// One message on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The outbox row id (also the Message-ID's local part, so receivers can spot duplicates).
    pub id: String,
    /// The recipient address.
    pub to: String,
    /// The template name (`verify_email`, …), for logs.
    pub template: String,
    /// Subject, text and HTML.
    pub rendered: Rendered,
}

impl Outgoing {
    /// The RFC 5322 message, multipart/alternative with the text and HTML parts.
    pub fn message(&self, from: &Mailbox) -> Result<Message, MailError> {
        let to: Mailbox = self
            .to
            .parse()
            .map_err(|_| MailError::Permanent("the recipient is not a valid address".into()))?;
        let domain = from.email.domain();
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(&self.rendered.subject)
            .message_id(Some(format!("<{}@{domain}>", self.id)))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(self.rendered.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(self.rendered.html.clone()),
                    ),
            )
            .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))
    }
}

/// Delivers one message. Implementations are cheap to share between tasks.
pub trait MailTransport: Send + Sync + fmt::Debug {
    /// `smtp`, `file` or `log`.
    fn kind(&self) -> &'static str;
    /// Delivers `mail`; an error says whether a retry may help.
    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), MailError>>;
}

/// Logs recipient and template only: links carry tokens, so the body is shown in development
/// alone, where a developer needs to click it.
#[derive(Debug)]
pub struct LogTransport {
    pub(super) show_body: bool,
}

impl MailTransport for LogTransport {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            if self.show_body {
                tracing::info!(to = %mail.to, template = %mail.template, body = %mail.rendered.text,
                    "mail (log transport, development: not sent)");
            } else {
                tracing::info!(to = %mail.to, template = %mail.template, "mail (log transport: not sent)");
            }
            Ok(())
        })
    }
}

/// Writes each message as `<uuid>.eml` into a folder.
pub struct FileTransport {
    pub(super) dir: PathBuf,
    pub(super) from: Mailbox,
    pub(super) inner: AsyncFileTransport<Tokio1Executor>,
}

impl fmt::Debug for FileTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTransport")
            .field("dir", &self.dir)
            .finish()
    }
}

impl MailTransport for FileTransport {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let message = mail.message(&self.from)?;
            let file =
                self.inner.send(message).await.map_err(|e| {
                    MailError::Transient(format!("cannot write the .eml file: {e}"))
                })?;
            tracing::debug!(id = %mail.id, file, "mail written");
            Ok(())
        })
    }
}
