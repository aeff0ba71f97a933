//! Stripe's wire format: a Checkout Session made with a form-encoded POST to
//! `{STRIPE_API_BASE}/v1/checkout/sessions`, and the `Stripe-Signature` of a webhook
//! (`HMAC-SHA256(secret, "{t}.{body}")`, any of several `v1`, 300 s tolerance).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::settings::StripeSettings;

/// How far a signature's timestamp may be from now, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Whether `header` (`t=…,v1=…[,v1=…]`) signs `body` with `secret` within the tolerance of
/// `now` (Unix seconds).
pub fn signed(header: &str, body: &[u8], secret: &str, now: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > TOLERANCE_SECONDS {
        return false;
    }
    let expected = sign(secret, t, body);
    sigs.iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

/// The `v1` signature of `body` at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A session to make.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// Our order id (`client_reference_id`, `metadata[order_id]`, the `Idempotency-Key`).
    pub order_id: &'a str,
    /// `payment` or `subscription`.
    pub mode: &'a str,
    /// The price in cents.
    pub amount_cents: i64,
    /// What is bought.
    pub description: &'a str,
    /// `month` or `year` for subscriptions.
    pub interval: Option<&'a str>,
    /// The buyer's email.
    pub email: &'a str,
    /// Where Stripe sends the buyer after paying.
    pub success_url: String,
    /// Where Stripe sends the buyer who gives up.
    pub cancel_url: String,
}

/// A session Stripe made.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Session {
    /// `cs_…`.
    pub id: String,
    /// The hosted payment page.
    pub url: String,
}

/// The HTTP client for Stripe's API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    secret_key: crate::config::Secret,
}

impl StripeClient {
    /// A client for `settings`, with a 10 s timeout.
    pub fn new(settings: &StripeSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            api_base: settings.api_base.clone(),
            secret_key: settings.secret_key.clone(),
        })
    }

    /// Makes a Checkout Session; the order id is the idempotency key, so a retry gets the same.
    pub async fn create_session(&self, s: &NewSession<'_>) -> Result<Session, String> {
        let amount = s.amount_cents.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("mode", s.mode),
            ("success_url", &s.success_url),
            ("cancel_url", &s.cancel_url),
            ("client_reference_id", s.order_id),
            ("metadata[order_id]", s.order_id),
            ("customer_email", s.email),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", "zar"),
            ("line_items[0][price_data][unit_amount]", &amount),
            (
                "line_items[0][price_data][product_data][name]",
                s.description,
            ),
        ];
        if let Some(interval) = s.interval {
            form.push(("line_items[0][price_data][recurring][interval]", interval));
            form.push(("subscription_data[metadata][order_id]", s.order_id));
        }
        let res = self
            .http
            .post(format!("{}/v1/checkout/sessions", self.api_base))
            .bearer_auth(self.secret_key.expose())
            .header("Idempotency-Key", s.order_id)
            .form(&form)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("Stripe answered {status}"));
        }
        res.json::<Session>()
            .await
            .map_err(|e| e.without_url().to_string())
    }
}

/// A refund to ask Stripe for.
#[derive(Debug, Clone)]
pub struct NewRefund<'a> {
    /// Our refund id (`metadata[refund_id]` and the `Idempotency-Key`).
    pub refund_id: &'a str,
    /// Our invoice id (`metadata[invoice_id]`).
    pub invoice_id: &'a str,
    /// The payment intent (`pi_…`) or charge (`ch_…`) to refund.
    pub payment: &'a str,
    /// How much, in cents.
    pub amount_cents: i64,
    /// Why, in words (`metadata[reason]`; Stripe's own `reason` is an enum).
    pub reason: &'a str,
}

/// A refund Stripe made.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Refund {
    /// `re_…`.
    pub id: String,
    /// `succeeded`, `pending`, `requires_action`, `failed`, `canceled`.
    pub status: String,
}

impl StripeClient {
    /// A form-encoded POST with the secret key, answered with JSON on a 2xx.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        key: Option<&str>,
        form: &[(&str, &str)],
    ) -> Result<T, String> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.api_base))
            .bearer_auth(self.secret_key.expose())
            .form(form);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let res = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("Stripe answered {status}"));
        }
        res.json::<T>()
            .await
            .map_err(|e| e.without_url().to_string())
    }

    /// Refunds part or all of a payment; our refund id is the idempotency key, so a retry of
    /// one refund is one refund at Stripe. A refund Stripe answers `failed` or `canceled` is an
    /// error.
    pub async fn refund(&self, r: &NewRefund<'_>) -> Result<Refund, String> {
        let amount = r.amount_cents.to_string();
        let target = if r.payment.starts_with("ch_") {
            "charge"
        } else {
            "payment_intent"
        };
        let form = [
            (target, r.payment),
            ("amount", amount.as_str()),
            ("metadata[refund_id]", r.refund_id),
            ("metadata[invoice_id]", r.invoice_id),
            ("metadata[reason]", r.reason),
        ];
        let refund: Refund = self.post("/v1/refunds", Some(r.refund_id), &form).await?;
        match refund.status.as_str() {
            "failed" | "canceled" => {
                Err(format!("Stripe's refund {} {}", refund.id, refund.status))
            }
            _ => Ok(refund),
        }
    }

    /// Sets or clears `cancel_at_period_end` of a subscription (`sub_…`).
    pub async fn set_cancel_at_period_end(&self, id: &str, cancel: bool) -> Result<(), String> {
        let form = [(
            "cancel_at_period_end",
            if cancel { "true" } else { "false" },
        )];
        let path = format!("/v1/subscriptions/{}", url_segment(id));
        self.post::<serde_json::Value>(&path, None, &form).await?;
        Ok(())
    }

    /// The payment intent (or charge) that paid a subscription invoice (`in_…`): its
    /// `payment_intent`, else its first payment's (API versions from 2025-03-31), else `charge`.
    pub async fn invoice_payment(&self, invoice: &str) -> Result<String, String> {
        let res = self
            .http
            .get(format!(
                "{}/v1/invoices/{}",
                self.api_base,
                url_segment(invoice)
            ))
            .bearer_auth(self.secret_key.expose())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("Stripe answered {status}"));
        }
        let v: serde_json::Value = res.json().await.map_err(|e| e.without_url().to_string())?;
        [
            "/payment_intent",
            "/payments/data/0/payment/payment_intent",
            "/charge",
        ]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|x| x.as_str()).map(str::to_owned))
        .ok_or_else(|| format!("Stripe's invoice {invoice} names no payment"))
    }
}

/// An id as one URL path segment (Stripe's ids are `[A-Za-z0-9_]`; anything else is escaped).
fn url_segment(id: &str) -> String {
    super::payfast::php_urlencode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_checked_over_the_raw_body_with_any_v1_within_the_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_x", 1000, body);
        assert!(signed(
            &format!("t=1000,v1=bad,v1={good}"),
            body,
            "whsec_x",
            1100
        ));
        assert!(!signed(&format!("t=1000,v1={good}"), body, "whsec_y", 1100));
        assert!(!signed(
            &format!("t=1000,v1={good}"),
            b"{}",
            "whsec_x",
            1100
        ));
        assert!(!signed(&format!("t=1000,v1={good}"), body, "whsec_x", 1301));
        assert!(!signed(&format!("v1={good}"), body, "whsec_x", 1000));
        assert!(!signed(&format!("t=1000,v0={good}"), body, "whsec_x", 1000));
    }
}
