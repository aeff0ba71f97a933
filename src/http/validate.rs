//! Validation of user-supplied input: the text rules every domain shares, and a [`Validator`]
//! that collects every invalid field into one 422.
//!
//! Text is checked, never rewritten: no truncation, no escaping (output encoding is the place
//! for that). The one transformation is Unicode NFC normalisation, so that the same visible text
//! is stored (and compared) the same way.

use std::{net::IpAddr, sync::OnceLock};

use unicode_normalization::UnicodeNormalization;
use utoipa::openapi::{schema::SchemaType, Object, ObjectBuilder, Type};

use crate::error::{AppError, FieldError};

// The characters no text field takes: C0 and C1 controls (tab and newline only where a field is
// multi-line), and the invisible formatting characters (Unicode category Cf, the bidi controls and
// the line and paragraph separators), which make lookalike names and hide text.
macro_rules! controls_line {
    () => {
        r"\x00-\x1F\x7F-\x9F"
    };
}
macro_rules! controls_multiline {
    () => {
        r"\x00-\x08\x0B-\x1F\x7F-\x9F"
    };
}
macro_rules! formatting {
    () => {
        concat!(
            r"\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u180E\u200B-\u200F",
            r"\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB",
            r"\U000110BD\U000110CD\U00013430-\U0001343F\U0001BCA0-\U0001BCA3",
            r"\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F"
        )
    };
}
// What `str::trim` removes (Unicode White_Space) beyond the controls and separators above.
macro_rules! spaces {
    () => {
        r"\x20\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000"
    };
}

/// The kinds of text a field can hold. Each is one regular expression, written in the subset that
/// ECMA-262 (the OpenAPI document's dialect), Python and Rust's `regex` read alike, so the
/// document states exactly what the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One line: no controls, no invisible formatting characters.
    Line,
    /// Like [`Kind::Line`], also tabs and newlines.
    Multiline,
    /// One line with at least one visible character.
    NonBlank,
    /// An address `local@domain`: a dot-atom local part and a dotted DNS domain, in ASCII
    /// (an internationalised domain in its `xn--` form); compared lower-cased.
    Email,
    /// An absolute `http` or `https` URL with a DNS host name.
    Url,
    /// A phone number: digits, spaces and `+-().`.
    Phone,
}

const LINE: &str = concat!("^[^", controls_line!(), formatting!(), "]*$");
const MULTILINE: &str = concat!("^[^", controls_multiline!(), formatting!(), "]*$");
const NON_BLANK: &str = concat!(
    "^[^",
    controls_line!(),
    formatting!(),
    "]*[^",
    controls_line!(),
    formatting!(),
    spaces!(),
    "][^",
    controls_line!(),
    formatting!(),
    "]*$"
);
const EMAIL: &str = concat!(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    r"@(?:[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*\.)+[A-Za-z][A-Za-z0-9]*(?:-+[A-Za-z0-9]+)*$"
);
// The host's labels have single hyphens (no `xn--` form the URL parser could refuse) and the last
// label starts with a letter (the parser reads a numeric last label as an IPv4 address).
const URL: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]?://",
    r"(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*",
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?",
    r"(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?",
    r"(?:#[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
);
const PHONE: &str = r"^[0-9 +().-]*$";

impl Kind {
    /// The regular expression a value must match.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::Line => LINE,
            Self::Multiline => MULTILINE,
            Self::NonBlank => NON_BLANK,
            Self::Email => EMAIL,
            Self::Url => URL,
            Self::Phone => PHONE,
        }
    }

    fn regex(self) -> &'static regex::Regex {
        static COMPILED: [OnceLock<regex::Regex>; 6] = [const { OnceLock::new() }; 6];
        COMPILED[self as usize].get_or_init(|| {
            regex::Regex::new(self.pattern()).expect("the text patterns are valid regexes")
        })
    }

    /// Why `value`, which does not match, is refused.
    fn problem(self, value: &str) -> String {
        let multiline = self == Self::Multiline;
        if let Some(c) = value
            .chars()
            .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
        {
            return format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            );
        }
        let formatting = regex::Regex::new(concat!("[", formatting!(), "]"));
        if let Some(m) = formatting.ok().and_then(|re| re.find(value)) {
            let c = m.as_str().chars().next().unwrap_or_default();
            return format!(
                "must not contain bidirectional or invisible formatting characters (found U+{:04X})",
                c as u32
            );
        }
        match self {
            Self::Line | Self::Multiline => "contains characters that are not allowed".into(),
            Self::NonBlank => "must not be empty".into(),
            Self::Email => "is not a valid email address (ASCII `name@example.com`; an \
                            internationalised domain in its xn-- form)"
                .into(),
            Self::Url => "must be an http(s) URL with a host name".into(),
            Self::Phone => "must be digits, spaces or +-().".into(),
        }
    }
}

/// A text field's rule: its kind and its length in characters (Unicode scalar values, counted
/// as sent).
#[derive(Debug, Clone, Copy)]
pub struct Text {
    /// What it may contain.
    pub kind: Kind,
    /// The fewest characters.
    pub min: usize,
    /// The most characters.
    pub max: usize,
}

impl Text {
    /// A rule.
    pub const fn new(kind: Kind, min: usize, max: usize) -> Self {
        Self { kind, min, max }
    }

    /// Checks `value` and returns it NFC-normalised; never truncates or rewrites otherwise.
    pub fn check(&self, value: &str) -> Result<String, String> {
        let len = value.chars().count();
        if len > self.max {
            return Err(format!(
                "must be at most {} characters (got {len})",
                self.max
            ));
        }
        if !self.kind.regex().is_match(value) {
            return Err(self.kind.problem(value));
        }
        if len < self.min {
            return Err(if len == 0 {
                "must not be empty".into()
            } else {
                format!("must be at least {} characters (got {len})", self.min)
            });
        }
        if self.kind == Kind::Url && url::Url::parse(value).is_err() {
            return Err(self.kind.problem(value));
        }
        Ok(value.nfc().collect())
    }

    /// The JSON Schema of a field with this rule (`nullable`: `null` is accepted too).
    pub fn schema(&self, nullable: bool) -> Object {
        let ty = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::Type(Type::String)
        };
        ObjectBuilder::new()
            .schema_type(ty)
            .min_length((self.min > 0).then_some(self.min))
            .max_length(Some(self.max))
            .pattern(Some(self.kind.pattern()))
            .build()
    }
}

/// Rules shared by several domains.
pub mod rules {
    use super::{Kind, Text};

    /// A given name.
    pub const GIVEN_NAME: Text = Text::new(Kind::NonBlank, 1, 100);
    /// A family name (may be empty).
    pub const FAMILY_NAME: Text = Text::new(Kind::Line, 0, 100);
    /// An email address.
    pub const EMAIL: Text = Text::new(Kind::Email, 3, 254);
    /// A web address.
    pub const URL: Text = Text::new(Kind::Url, 0, 2048);
}

/// `fn name() -> Object` for `#[schema(schema_with = name)]`, one per rule and nullability.
#[macro_export]
macro_rules! text_schema {
    ($($name:ident => $rule:expr, $nullable:expr;)*) => {
        $(
            #[allow(missing_docs)]
            pub fn $name() -> utoipa::openapi::Object {
                $rule.schema($nullable)
            }
        )*
    };
}

/// Normalises `value` to NFC and checks it: at most `max` characters, no control characters
/// other than `\n` and `\t` (and only those when `multiline`), no invisible formatting.
pub fn clean(value: &str, max: usize, multiline: bool) -> Result<String, String> {
    let kind = if multiline {
        Kind::Multiline
    } else {
        Kind::Line
    };
    Text::new(kind, 0, max).check(value)
}

/// One line of at most `max` characters with at least one visible character.
pub fn required(value: &str, max: usize) -> Result<String, String> {
    Text::new(Kind::NonBlank, 1, max).check(value)
}

/// An `http` or `https` URL with a host name, at most 2048 characters.
pub fn url(value: &str) -> Result<String, String> {
    rules::URL.check(value)
}

/// An id from a path: ids are UUIDs, so anything else names nothing (404 with `not_found`)
/// and never reaches the database (PostgreSQL refuses some bytes, such as NUL, in text).
pub fn known_id(id: &str, not_found: &str) -> Result<(), AppError> {
    match uuid::Uuid::try_parse(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(AppError::NotFound(not_found.to_owned())),
    }
}

/// One line of at most 254 characters, for search and filter values that reach the database.
pub const FILTER: Text = Text::new(Kind::Line, 0, 254);

/// Checks optional filter values with [`FILTER`]: one 422 naming every invalid one.
pub fn filters(values: &[(&str, Option<&str>)]) -> Result<(), AppError> {
    let mut v = Validator::new();
    for (field, value) in values {
        if let Some(Err(e)) = value.map(|value| FILTER.check(value)) {
            v.error(field, e);
        }
    }
    v.finish()
}

crate::text_schema! {
    filter_schema => FILTER, false;
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

/// Reads an optional whole number from JSON as JSON Schema's `integer` means it: `3264` and
/// `3264.0` alike (a generated client may send either), never `3264.5`. For
/// `#[serde(default, deserialize_with = "…")]` on an `Option<i64>`; `null` is `None`.
pub fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::{self, Visitor};
    struct Whole;
    impl Visitor<'_> for Whole {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("must be a whole number in range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Below 2^53 every whole f64 is exact, so the conversion loses nothing.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.fract() == 0.0 && v.abs() < EXACT {
                Ok(Some(v as i64))
            } else {
                Err(E::custom("must be a whole number"))
            }
        }
    }
    d.deserialize_any(Whole)
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

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction_but_not_a_real_one() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[serde(default, deserialize_with = "super::optional_whole_number")]
            n: Option<i64>,
        }
        let read = |json: &str| serde_json::from_str::<Body>(json).map(|b| b.n);
        assert_eq!(read(r#"{"n": 3264}"#).unwrap(), Some(3264));
        assert_eq!(read(r#"{"n": 3264.0}"#).unwrap(), Some(3264));
        assert_eq!(read(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(read("{}").unwrap(), None);
        assert!(read(r#"{"n": 3264.5}"#).is_err());
        assert!(read(r#"{"n": 1e300}"#).is_err());
        assert!(read(r#"{"n": "3264"}"#).is_err());
    }
}
