//! The messages of the auth domain, in the platform's branded layout.

use chrono::{DateTime, Utc};

use crate::mail::{
    layout::{notice, with_link},
    Message, Rendered,
};

/// What the auth domain sends.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Message for Template {
    fn name(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::PasswordReset { .. } => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::AccountLocked { .. } => "account_locked",
        }
    }

    fn render(&self) -> Rendered {
        match self {
            Self::VerifyEmail { link } => with_link(
                "Confirm your CapeControl email address",
                "Please confirm your email address to finish setting up your CapeControl account.",
                "Confirm email address",
                link,
                "This link is valid for 24 hours. If you did not create an account, ignore this \
                 email.",
            ),
            Self::PasswordReset { link } => with_link(
                "Reset your CapeControl password",
                "Someone (hopefully you) asked to reset the password of your CapeControl account.",
                "Choose a new password",
                link,
                "This link is valid for 30 minutes and works once. If you did not ask for it, \
                 ignore this email: your password stays as it is.",
            ),
            Self::PasswordChanged => notice(
                "Your CapeControl password was changed",
                &[
                    "The password of your CapeControl account was just changed, and your other \
                     sessions were signed out.",
                    "If this was not you, reset your password now and contact support.",
                ],
            ),
            Self::AccountLocked { until } => {
                let until = until.format("%Y-%m-%d %H:%M UTC").to_string();
                notice(
                    "Your CapeControl account is temporarily locked",
                    &[
                        "Your CapeControl account was locked after repeated failed sign-in \
                         attempts.",
                        &format!("You can sign in again after {until}."),
                        "If this was not you, someone may be guessing your password: consider \
                         resetting it once the lock ends.",
                    ],
                )
            }
        }
    }
}

/// Emails of one kind a user can trigger for one recipient: at most one a minute.
pub const MAIL_GAP_SECONDS: i64 = 60;
/// Emails of one kind a user can trigger for one recipient: at most five an hour.
pub const MAIL_HOURLY: i64 = 5;

/// Claims one email of kind `template` (its [`Message::name`]) for `to` from the recipient's
/// budget (one a minute, five an hour per kind), in `conn`; false when it is spent. Whoever asks,
/// from whatever address: a flood of requests sends nothing more, and answers as usual.
pub async fn allowed(
    conn: &mut sqlx::AnyConnection,
    to: &str,
    template: &str,
) -> Result<bool, sqlx::Error> {
    let granted = super::guards::claim_at(
        conn,
        crate::db::types::now_micros(),
        &format!("mail:{}", to.to_lowercase()),
        &format!("mail:{template}"),
        MAIL_HOURLY,
        3600 * 1_000_000,
        Some(MAIL_GAP_SECONDS * 1_000_000),
    )
    .await?;
    if granted.is_none() {
        tracing::info!(
            template,
            "an email was not sent: its recipient's budget is spent"
        );
    }
    Ok(granted.is_some())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn every_template_has_a_branded_subject_and_both_parts() {
        let until = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 0).unwrap();
        for t in [
            Template::VerifyEmail {
                link: "https://x.test/auth/verify-email?token=t".into(),
            },
            Template::PasswordReset {
                link: "https://x.test/auth/reset-password?token=t".into(),
            },
            Template::PasswordChanged,
            Template::AccountLocked { until },
        ] {
            let r = t.render();
            assert!(r.subject.contains("CapeControl"), "{}", r.subject);
            assert!(r.text.contains("CapeControl team") && r.html.contains("</html>"));
        }
        let locked = Template::AccountLocked { until }.render();
        assert!(locked.text.contains("2026-01-02 03:04 UTC"));
    }

    #[test]
    fn a_reset_link_is_escaped_in_html_and_verbatim_in_text() {
        let link = "https://x.test/auth/reset-password?token=a&b=<c>";
        let r = Template::PasswordReset { link: link.into() }.render();
        assert!(r.text.contains(link));
        assert!(r.html.contains("token=a&amp;b=&lt;c&gt;"), "{}", r.html);
    }
}
