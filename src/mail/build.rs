//! Chooses the transport that the settings name.

use std::sync::Arc;

use lettre::AsyncFileTransport;

use crate::config::{Environment, MailSettings, TransportSetting};

use super::{
    smtp::SmtpTransport,
    transport::{FileTransport, LogTransport, MailTransport},
};

/// Builds the transport that `settings` names.
pub fn transport(
    settings: &MailSettings,
    env: Environment,
) -> anyhow::Result<Arc<dyn MailTransport>> {
    Ok(match &settings.transport {
        TransportSetting::Log => Arc::new(LogTransport {
            show_body: env == Environment::Development,
        }),
        TransportSetting::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the mail folder {}: {e}", dir.display())
            })?;
            Arc::new(FileTransport {
                dir: dir.clone(),
                from: settings.from.clone(),
                inner: AsyncFileTransport::new(dir),
            })
        }
        TransportSetting::Smtp(smtp) => Arc::new(SmtpTransport::new(
            smtp,
            settings.from.clone(),
            settings.send_timeout,
        )?),
    })
}
