//! The text and HTML of each message. Every interpolated value is HTML-escaped in the HTML part.

use super::Template;

/// A message ready to send: subject, plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line, branded CapeControl.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// Renders `template` into its subject, text and HTML.
pub fn render(template: &Template) -> Rendered {
    match template {
        Template::VerifyEmail { link } => with_link(
            "Confirm your CapeControl email address",
            "Please confirm your email address to finish setting up your CapeControl account.",
            "Confirm email address",
            link,
            "This link is valid for 24 hours. If you did not create an account, ignore this email.",
        ),
        Template::PasswordReset { link } => with_link(
            "Reset your CapeControl password",
            "Someone (hopefully you) asked to reset the password of your CapeControl account.",
            "Choose a new password",
            link,
            "This link is valid for 30 minutes and works once. If you did not ask for it, ignore \
             this email: your password stays as it is.",
        ),
        Template::PasswordChanged => notice(
            "Your CapeControl password was changed",
            &[
                "The password of your CapeControl account was just changed, and your other \
                 sessions were signed out.",
                "If this was not you, reset your password now and contact support.",
            ],
        ),
        Template::AccountLocked { until } => {
            let until = until.format("%Y-%m-%d %H:%M UTC").to_string();
            notice(
                "Your CapeControl account is temporarily locked",
                &[
                    "Your CapeControl account was locked after repeated failed sign-in attempts.",
                    &format!("You can sign in again after {until}."),
                    "If this was not you, someone may be guessing your password: consider \
                     resetting it once the lock ends.",
                ],
            )
        }
    }
}

fn with_link(subject: &str, intro: &str, action: &str, link: &str, note: &str) -> Rendered {
    let text = format!("Hello,\n\n{intro}\n\n{action}: {link}\n\n{note}\n\n{SIGNATURE}\n");
    let body = format!(
        "<p>{intro}</p>\n<p><a href=\"{href}\">{action}</a></p>\n\
         <p>Or paste this link into your browser:<br>{href}</p>\n<p>{note}</p>",
        intro = escape(intro),
        href = escape(link),
        action = escape(action),
        note = escape(note),
    );
    Rendered {
        subject: subject.into(),
        text,
        html: page(subject, &body),
    }
}

fn notice(subject: &str, paragraphs: &[&str]) -> Rendered {
    let text = format!("Hello,\n\n{}\n\n{SIGNATURE}\n", paragraphs.join("\n\n"));
    let body = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect::<Vec<_>>()
        .join("\n");
    Rendered {
        subject: subject.into(),
        text,
        html: page(subject, &body),
    }
}

const SIGNATURE: &str = "The CapeControl team";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5\">\n<p>Hello,</p>\n{body}\n\
         <p>{SIGNATURE}</p>\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn links_are_escaped_in_html_and_verbatim_in_text() {
        let link = "https://x.test/auth/reset-password?token=a&b=\"<c>'";
        let r = render(&Template::PasswordReset { link: link.into() });
        assert!(r.text.contains(link));
        assert!(!r.html.contains(link));
        assert!(
            r.html.contains("token=a&amp;b=&quot;&lt;c&gt;&#x27;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<c>"));
    }

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
            let r = render(&t);
            assert!(r.subject.contains("CapeControl"), "{}", r.subject);
            assert!(r.text.contains("CapeControl team") && r.html.contains("</html>"));
        }
        let locked = render(&Template::AccountLocked { until });
        assert!(locked.text.contains("2026-01-02 03:04 UTC"));
    }
}
