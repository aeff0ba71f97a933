//! The branded layout every message uses: a greeting, the content, the signature. Domains write
//! their words and call [`with_link`] or [`notice`]; every interpolated value is HTML-escaped in
//! the HTML part.

use serde::{Deserialize, Serialize};

/// A message ready to send: subject, plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    /// The subject line, branded CapeControl.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// A message whose point is one link: the intro, a button-like link (also pasted in full), a note.
pub fn with_link(subject: &str, intro: &str, action: &str, link: &str, note: &str) -> Rendered {
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

/// A message of a few paragraphs.
pub fn notice(subject: &str, paragraphs: &[&str]) -> Rendered {
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
    use super::*;

    #[test]
    fn links_are_escaped_in_html_and_verbatim_in_text() {
        let link = "https://x.test/auth/reset-password?token=a&b=\"<c>'";
        let r = with_link("Subject", "Intro", "Act", link, "Note");
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
    fn every_message_is_signed_and_has_both_parts() {
        for r in [
            with_link("S", "I", "A", "https://x.test", "N"),
            notice("S", &["one", "<two>"]),
        ] {
            assert!(r.text.contains("CapeControl team") && r.html.contains("</html>"));
        }
        assert!(notice("S", &["<two>"]).html.contains("&lt;two&gt;"));
    }
}
