//! Validation of user-supplied text: NFC-normalised, no control characters, bounded length.
//!
//! Data is never silently truncated or rewritten beyond Unicode normalisation: anything else that
//! is wrong is refused with a message saying why.

use unicode_normalization::UnicodeNormalization;

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
}
