//! PayFast's wire format: PHP-style `urlencode`, the MD5 signature of a checkout form (fields in
//! PayFast's documented order) and of a notification (fields in the order received), and the
//! server confirmation of a notification through a client whose base URL is configurable.

use std::time::Duration;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::settings::PayFastSettings;

/// The order PayFast signs checkout fields in (its SDK's `Auth::generateSignature`); fields
/// not listed are not signed.
pub const SIGNED_ORDER: [&str; 31] = [
    "merchant_id",
    "merchant_key",
    "return_url",
    "cancel_url",
    "notify_url",
    "name_first",
    "name_last",
    "email_address",
    "cell_number",
    "m_payment_id",
    "amount",
    "item_name",
    "item_description",
    "custom_int1",
    "custom_int2",
    "custom_int3",
    "custom_int4",
    "custom_int5",
    "custom_str1",
    "custom_str2",
    "custom_str3",
    "custom_str4",
    "custom_str5",
    "email_confirmation",
    "confirmation_address",
    "payment_method",
    "subscription_type",
    "billing_date",
    "recurring_amount",
    "frequency",
    "cycles",
];

/// PHP's `urlencode`: ASCII letters, digits and `-_.` as they are, a space as `+`, every other
/// byte as upper-case `%XX`.
pub fn php_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Cents as PayFast writes amounts: `52900` is `529.00`.
pub fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Reads an amount PayFast sent (`529.00`, `529.0`, `529`) as cents; anything else is `None`.
pub fn parse_amount(value: &str) -> Option<i64> {
    let (whole, frac) = match value.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (value, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 12 || frac.len() > 2 || !digits(whole) || !digits(frac) {
        return None;
    }
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

fn with_passphrase(mut text: String, passphrase: Option<&str>) -> String {
    if let Some(p) = passphrase.filter(|p| !p.trim().is_empty()) {
        text.push_str("&passphrase=");
        text.push_str(&php_urlencode(p.trim()));
    }
    text
}

/// The signature of checkout `fields`: the non-empty ones in [`SIGNED_ORDER`], trimmed and
/// encoded, with the passphrase appended when set.
pub fn checkout_signature(fields: &[(&str, String)], passphrase: Option<&str>) -> String {
    let text = SIGNED_ORDER
        .iter()
        .filter_map(|name| {
            fields
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(k, v)| format!("{k}={}", php_urlencode(v.trim())))
        })
        .collect::<Vec<_>>()
        .join("&");
    md5_hex(&with_passphrase(text, passphrase))
}

/// The parameter string of a notification: every posted field but `signature`, in the order
/// received, re-encoded as PayFast does. It is also what the server confirmation posts back.
pub fn param_string(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .filter(|(k, _)| k != "signature")
        .map(|(k, v)| format!("{k}={}", php_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a notification's `signature` matches its fields and our passphrase.
pub fn notification_signed(fields: &[(String, String)], passphrase: Option<&str>) -> bool {
    let Some((_, sent)) = fields.iter().find(|(k, _)| k == "signature") else {
        return false;
    };
    let expected = md5_hex(&with_passphrase(param_string(fields), passphrase));
    expected
        .as_bytes()
        .ct_eq(sent.to_ascii_lowercase().as_bytes())
        .into()
}

/// Why a server confirmation did not say `VALID`.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// PayFast answered something else (`INVALID`).
    #[error("PayFast did not confirm the notification (it answered {0:?})")]
    Refused(String),
    /// PayFast could not be reached or answered an error status.
    #[error("PayFast's validation endpoint could not be reached: {0}")]
    Unreachable(String),
}

/// The HTTP client that asks PayFast to confirm notifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PayFastClient {
    http: reqwest::Client,
    validate_url: String,
}

impl PayFastClient {
    /// A client for `settings`' validation URL, with a 10 s timeout.
    pub fn new(settings: &PayFastSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            validate_url: settings.validate_url.clone(),
        })
    }

    /// Posts the notification's parameter string back; only an answer of exactly `VALID`
    /// confirms it.
    pub async fn confirm(&self, params: &str) -> Result<(), ConfirmError> {
        let res = self
            .http
            .post(&self.validate_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(params.to_owned())
            .send()
            .await
            .map_err(|e| ConfirmError::Unreachable(e.without_url().to_string()))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .map_err(|e| ConfirmError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(ConfirmError::Unreachable(format!("status {status}")));
        }
        if body.trim() == "VALID" {
            Ok(())
        } else {
            Err(ConfirmError::Refused(body.chars().take(40).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payfast_sdk_test_vector_reproduces_whatever_the_field_order() {
        // PayFast's PHP SDK, AuthTest::testGenerateSignatureOrdering (fields shuffled there).
        let mut fields: Vec<(&str, String)> = [
            ("notify_url", "https://test.com/payfast/webhook"),
            ("merchant_key", "4hjoenwbwnuso"),
            ("subscription_type", "1"),
            ("m_payment_id", "5"),
            ("amount", "5.00"),
            ("recurring_amount", "5"),
            ("billing_date", "2023-01-01"),
            ("frequency", "3"),
            ("cycles", "0"),
            ("custom_str1", "U29tZSBUZXN0IFN0cmluZw"),
            ("custom_int1", "1"),
            ("custom_int2", "1"),
            ("custom_str2", "QW5vdGhlciBUZXN0IFN0cmluZw"),
            ("item_name", "Test"),
            ("name_last", "Test"),
            ("name_first", "Test"),
            ("email_address", "test@test.com"),
            ("confirmation_address", "test@test.test"),
            ("email_confirmation", "1"),
            ("return_url", "https://test.com/billing/success"),
            ("cancel_url", "https://test.com/billing/cancel"),
            ("merchant_id", "10028084"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        let expected = "3441682c5d8a65486f5b7cc8ce41d146";
        assert_eq!(
            checkout_signature(&fields, Some("payfastsandbox")),
            expected
        );
        fields.reverse();
        assert_eq!(
            checkout_signature(&fields, Some("payfastsandbox")),
            expected
        );
    }

    #[test]
    fn urlencode_is_php_style() {
        assert_eq!(php_urlencode("a b~c/é*"), "a+b%7Ec%2F%C3%A9%2A");
        assert_eq!(php_urlencode("Az09-_."), "Az09-_.");
    }

    #[test]
    fn amounts_are_formatted_from_cents_and_read_back_strictly() {
        assert_eq!(amount(52900), "529.00");
        assert_eq!(amount(5), "0.05");
        assert_eq!(parse_amount("529.00"), Some(52900));
        assert_eq!(parse_amount("529.5"), Some(52950));
        assert_eq!(parse_amount("529"), Some(52900));
        for bad in ["", "-1.00", "1.005", "1e3", " 1.00", "1.", ".5", "abc"] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_notification_signature_covers_every_field_in_the_order_received() {
        let mut fields: Vec<(String, String)> = [
            ("m_payment_id", "1234"),
            ("pf_payment_id", "1221576"),
            ("item_description", ""),
            ("amount_gross", "10.00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let sig = md5_hex(&with_passphrase(param_string(&fields), Some("salt")));
        fields.push(("signature".into(), sig));
        assert!(notification_signed(&fields, Some("salt")));
        assert!(!notification_signed(&fields, None));
        fields.swap(0, 1);
        assert!(!notification_signed(&fields, Some("salt")));
    }
}
