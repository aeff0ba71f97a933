//! The SMTP transport: lettre over tokio and rustls, with a small connection pool.

use std::{fmt, time::Duration};

use futures::future::BoxFuture;
use lettre::{
    message::Mailbox,
    transport::smtp::authentication::{Credentials, Mechanism},
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
};

use super::transport::{MailError, MailTransport, Outgoing};
use crate::config::{SmtpSettings, SmtpTls};

/// Sends through the relay named by `MAIL_TRANSPORT`.
pub struct SmtpTransport {
    relay: String,
    from: Mailbox,
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpTransport {
    /// Prepares the connection pool; nothing connects until the first message.
    pub fn new(settings: &SmtpSettings, from: Mailbox, timeout: Duration) -> anyhow::Result<Self> {
        type Smtp = AsyncSmtpTransport<Tokio1Executor>;
        let host = settings.host.as_str();
        let mut builder = match settings.tls {
            SmtpTls::StartTls => Smtp::starttls_relay(host)?,
            SmtpTls::Implicit => Smtp::relay(host)?,
            SmtpTls::None => Smtp::builder_dangerous(host),
        }
        .port(settings.port)
        .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder
                .credentials(Credentials::new(user.clone(), password.expose().to_owned()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Self {
            relay: format!("{host}:{}", settings.port),
            from,
            inner: builder.build(),
        })
    }
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("relay", &self.relay)
            .finish()
    }
}

impl MailTransport for SmtpTransport {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let message = mail.message(&self.from)?;
            // Every SMTP failure is retried, permanent (5xx) answers included: a relay that
            // refuses everyone is usually a configuration mistake that an operator can fix
            // before the attempts run out. lettre's errors never contain the credentials.
            self.inner
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Transient(format!("SMTP {}: {e}", self.relay)))
        })
    }
}
