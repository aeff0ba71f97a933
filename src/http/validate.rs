//! Validation of user-supplied input: the text rules every domain shares, and a [`Validator`]
//! that collects every invalid field into one 422.
//!
//! Text is checked, never rewritten: no truncation, no escaping (output encoding is the place
//! for that). The one transformation is Unicode NFC normalisation, so that the same visible text
//! is stored (and compared) the same way.

use std::net::IpAddr;

use unicode_normalization::UnicodeNormalization;

use crate::error::{AppError, FieldError};

/// Normalises `value` to NFC and checks it: at most `max` characters, no control characters
/// other than `\n` and `\t` (and only those when `multiline`).
pub fn clean(value: &str, max: usize, multiline: bool) -> Result<String, String> {
    let value: String = value.nfc().collect();
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !(multiline && (*c == '\n' || *c == '\t')))
    {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    if value.chars().any(is_invisible_formatting) {
        return Err("must not contain bidirectional or invisible formatting characters".into());
    }
    let len = value.chars().count();
    if len > max {
        return Err(format!("must be at most {max} characters (got {len})"));
    }
    Ok(value)
}

/// Like [`clean`], and the result must not be empty or only whitespace.
pub fn required(value: &str, max: usize) -> Result<String, String> {
    let value = clean(value, max, false)?;
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value)
}

/// Characters that change how text is displayed without being visible (bidi overrides, zero-width
/// joiners at the edges are common in spoofing).
fn is_invisible_formatting(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}' | '\u{FEFF}')
}

/// An `http` or `https` URL with a host, at most 2048 characters.
pub fn url(value: &str) -> Result<String, String> {
    let value = clean(value, 2048, false)?;
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(value),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// Collects field errors while a request is validated.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Checks free text with the rules of [`clean`] (multi-line) and `min..=max` characters;
    /// returns it NFC-normalised.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> String {
        match clean(value, max, true) {
            Ok(value) if value.chars().count() < min => {
                self.error(field, format!("must be at least {min} characters"));
                value
            }
            Ok(value) => value,
            Err(message) => {
                self.error(field, message);
                value.to_owned()
            }
        }
    }

    /// Parses an IP address.
    pub fn ip(&mut self, field: &str, value: &str) -> Option<IpAddr> {
        let ip = value.parse().ok();
        if ip.is_none() {
            self.error(field, "is not an IP address");
        }
        ip
    }

    /// Checks that `value` is within `min..=max`.
    pub fn range(&mut self, field: &str, value: u64, min: u64, max: u64) -> u64 {
        if !(min..=max).contains(&value) {
            self.error(field, format!("must be between {min} and {max}"));
        }
        value
    }

    /// `Ok` when every field was valid, else one 422 listing them all.
    pub fn finish(self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposed_text_is_composed_to_nfc() {
        assert_eq!(clean("e\u{301}", 10, false).unwrap(), "\u{e9}");
    }

    #[test]
    fn control_characters_are_refused_except_newline_and_tab_in_multiline_text() {
        assert!(clean("a\u{0}b", 10, true).is_err());
        assert!(clean("a\nb", 10, false).is_err());
        assert_eq!(clean("a\n\tb", 10, true).unwrap(), "a\n\tb");
    }

    #[test]
    fn overlong_text_is_refused_not_truncated() {
        assert!(clean("abcdef", 5, false).unwrap_err().contains("at most 5"));
    }

    #[test]
    fn a_validator_reports_every_invalid_field_and_keeps_newlines_and_tabs() {
        let mut v = Validator::new();
        assert_eq!(
            v.text("bio", "line one\nline\ttwo", 0, 100),
            "line one\nline\ttwo"
        );
        v.text("note", "bell\u{7}", 0, 100);
        v.ip("ip", "not-an-ip");
        v.text("reason", "", 1, 10);
        let AppError::Validation(errors) = v.finish().unwrap_err() else {
            panic!()
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["note", "ip", "reason"]);
    }
}
