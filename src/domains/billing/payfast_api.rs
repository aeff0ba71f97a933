//! PayFast's API (`PAYFAST_API_URL`): refunds and subscription cancels, signed as its PHP SDK
//! signs them (`Request::sendApiRequest`, `Auth::generateApiSignature`): headers `merchant-id`,
//! `version: v1` and `timestamp` (ISO-8601), and `signature`, the MD5 of every header and body
//! parameter and `passphrase`, sorted by key, each `key=urlencode(value)` PHP-style, joined by
//! `&`. The sandbox is asked with `?testing=true` (not signed).

use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::{
    payfast::php_urlencode,
    settings::{PayFastMode, PayFastSettings},
};

/// The signature of an API request's `params` (headers and body) salted with `passphrase`.
pub fn api_signature(params: &[(&str, String)], passphrase: Option<&str>) -> String {
    let mut all: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(p) = passphrase {
        all.push(("passphrase", p));
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    let text = all
        .iter()
        .map(|(k, v)| format!("{k}={}", php_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A refund to ask PayFast for.
#[derive(Debug, Clone)]
pub struct PayFastRefund<'a> {
    /// PayFast's payment id (`pf_payment_id`).
    pub payment_id: &'a str,
    /// How much, in cents.
    pub amount_cents: i64,
    /// Why (shown to the buyer).
    pub reason: &'a str,
}

/// The client for PayFast's API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PayFastApi {
    http: reqwest::Client,
    api_url: String,
    merchant_id: String,
    passphrase: Option<crate::config::Secret>,
    testing: bool,
}

impl PayFastApi {
    /// A client for `settings`, with a 10 s timeout.
    pub fn new(settings: &PayFastSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            merchant_id: settings.merchant_id.clone(),
            passphrase: settings.passphrase.clone(),
            testing: settings.mode == PayFastMode::Sandbox,
        })
    }

    /// Refunds part or all of a payment (`POST /refunds/{pf_payment_id}`). PayFast emails the
    /// buyer only when asked; we send our own email, so `notify_buyer` is 0.
    pub async fn refund(&self, r: &PayFastRefund<'_>) -> Result<(), String> {
        let body = vec![
            ("amount", r.amount_cents.to_string()),
            ("reason", r.reason.to_owned()),
            ("notify_buyer", "0".to_owned()),
        ];
        let json = json!({"amount": r.amount_cents, "reason": r.reason, "notify_buyer": 0});
        let path = format!("refunds/{}", php_urlencode(r.payment_id));
        self.send(reqwest::Method::POST, &path, &body, Some(json))
            .await
    }

    /// Cancels a subscription so PayFast bills it no more (`PUT /subscriptions/{token}/cancel`).
    pub async fn cancel_subscription(&self, token: &str) -> Result<(), String> {
        let path = format!("subscriptions/{}/cancel", php_urlencode(token));
        self.send(reqwest::Method::PUT, &path, &[], None).await
    }

    /// Sends one signed request; only a 2xx answer whose `status` is `success` succeeds.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &[(&str, String)],
        json: Option<Value>,
    ) -> Result<(), String> {
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%z").to_string();
        let mut signed = vec![
            ("merchant-id", self.merchant_id.clone()),
            ("version", "v1".to_owned()),
            ("timestamp", timestamp.clone()),
        ];
        signed.extend(body.iter().cloned());
        let passphrase = self.passphrase.as_ref().map(|p| p.expose());
        let signature = api_signature(&signed, passphrase);
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.api_url))
            .header("merchant-id", &self.merchant_id)
            .header("version", "v1")
            .header("timestamp", timestamp)
            .header("signature", signature);
        if self.testing {
            req = req.query(&[("testing", "true")]);
        }
        if let Some(json) = json {
            req = req.json(&json);
        }
        let res = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or_default();
        if status.is_success() && answer["status"] == "success" {
            Ok(())
        } else {
            Err(format!(
                "PayFast answered {status} ({})",
                answer["data"]["message"].as_str().unwrap_or("no message")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_signature_sorts_headers_body_and_passphrase_by_key() {
        // Computed independently with Python (hashlib.md5 over the sorted, quote_plus-encoded
        // pairs), with the merchant and passphrase of PayFast's SDK tests.
        let headers = [
            ("merchant-id", "10018867".to_owned()),
            ("version", "v1".to_owned()),
            ("timestamp", "2026-12-02T10:15:00+0000".to_owned()),
        ];
        let mut refund = headers.to_vec();
        refund.extend([
            ("amount", "5000".to_owned()),
            ("reason", "Product returned".to_owned()),
            ("notify_buyer", "0".to_owned()),
        ]);
        assert_eq!(
            api_signature(&refund, Some("2uU_k5q_vRS_")),
            "c13b9274a847d068181265839e2b25c3"
        );
        refund.reverse();
        assert_eq!(
            api_signature(&refund, Some("2uU_k5q_vRS_")),
            "c13b9274a847d068181265839e2b25c3"
        );
        assert_eq!(
            api_signature(&headers, Some("2uU_k5q_vRS_")),
            "a4913db1c421269d48d3c4e86efa160e"
        );
    }
}
