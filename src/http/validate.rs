//! Input validation helpers for request types: every invalid field is collected into one 422.
//!
//! Text is checked, never rewritten: no truncation, no escaping (output encoding is the place
//! for that). The one transformation is Unicode NFC normalisation of names and emails, so that
//! the same visible text is stored (and compared) the same way.

use std::net::IpAddr;

use unicode_normalization::UnicodeNormalization;

use crate::error::{AppError, FieldError};

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

    /// Checks free text: `min..=max` characters, no control characters other than newline and
    /// tab. Returns the text unchanged.
    pub fn text<'a>(&mut self, field: &str, value: &'a str, min: usize, max: usize) -> &'a str {
        if let Some(c) = value
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            self.error(
                field,
                format!("contains the control character U+{:04X}", c as u32),
            );
        }
        self.length(field, value, min, max);
        value
    }

    /// Checks a single-line name (no newline or tab either) and returns it NFC-normalised.
    pub fn name(&mut self, field: &str, value: &str, max: usize) -> String {
        let value: String = value.nfc().collect();
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            self.error(
                field,
                format!("contains the control character U+{:04X}", c as u32),
            );
        }
        if value.trim().is_empty() {
            self.error(field, "must not be blank");
        } else {
            self.length(field, &value, 1, max);
        }
        value
    }

    /// Checks an email address and returns it NFC-normalised (case is kept).
    pub fn email(&mut self, field: &str, value: &str) -> String {
        let value: String = value.nfc().collect();
        if value.chars().count() > 254 || !email_address::EmailAddress::is_valid(&value) {
            self.error(field, "is not an email address");
        }
        value
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

    fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            self.error(field, format!("must be at least {min} characters"));
        } else if n > max {
            self.error(
                field,
                format!("must be at most {max} characters (it has {n})"),
            );
        }
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
    fn names_are_nfc_normalised_and_never_truncated() {
        let mut v = Validator::new();
        let decomposed = "Zoe\u{0308}";
        assert_eq!(v.name("name", decomposed, 10), "Zo\u{00EB}");
        let long = "a".repeat(11);
        assert_eq!(v.name("other", &long, 10), long);
        let err = v.finish().unwrap_err();
        assert!(
            matches!(err, AppError::Validation(ref e) if e.len() == 1 && e[0].field == "other")
        );
    }

    #[test]
    fn text_keeps_newlines_and_tabs_but_refuses_other_control_characters() {
        let mut v = Validator::new();
        v.text("bio", "line one\nline\ttwo", 0, 100);
        assert!(Validator::new().finish().is_ok());
        v.text("note", "bell\u{7}", 0, 100);
        v.email("email", "not-an-email");
        let AppError::Validation(errors) = v.finish().unwrap_err() else {
            panic!()
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["note", "email"]);
    }
}
