//! The billing settings: PayFast, Stripe and the grace period. A provider without its settings
//! is off; its secrets are redacted in `config check` and never logged.

use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Core, DomainSettings, Environment, Reader, Secret};

/// Where PayFast payments go: its sandbox, or real money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayFastMode {
    /// `sandbox.payfast.co.za`.
    Sandbox,
    /// `www.payfast.co.za`.
    Live,
}

/// PayFast, when configured.
#[derive(Debug, Clone)]
pub struct PayFastSettings {
    /// `PAYFAST_MERCHANT_ID`.
    pub merchant_id: String,
    /// `PAYFAST_MERCHANT_KEY` (posted to PayFast in the checkout form; redacted here anyway).
    pub merchant_key: Secret,
    /// `PAYFAST_PASSPHRASE`: salts every signature; subscriptions need it.
    pub passphrase: Option<Secret>,
    /// `PAYFAST_MODE`.
    pub mode: PayFastMode,
    /// `PAYFAST_PROCESS_URL`: where the checkout form posts.
    pub process_url: String,
    /// `PAYFAST_VALIDATE_URL`: the server confirmation of a notification.
    pub validate_url: String,
    /// `PAYFAST_API_URL`: subscriptions and refunds API.
    pub api_url: String,
    /// `PAYFAST_VALID_SOURCES`: the networks notifications may come from.
    pub valid_sources: Vec<IpNet>,
}

/// Stripe, when configured.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `STRIPE_SECRET_KEY`.
    pub secret_key: Secret,
    /// `STRIPE_WEBHOOK_SECRET`.
    pub webhook_secret: Secret,
    /// `STRIPE_API_BASE`.
    pub api_base: String,
}

/// Billing settings.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// PayFast, or `None` when off.
    pub payfast: Option<PayFastSettings>,
    /// Stripe, or `None` when off.
    pub stripe: Option<StripeSettings>,
    /// `BILLING_GRACE_DAYS`: how long an unpaid subscription stays `past_due` before `free`.
    pub grace_days: u32,
}

/// PayFast's published notification networks (its developer documentation, "ITN" section).
pub const PAYFAST_SOURCES: &str =
    "197.97.145.144/28,41.74.179.192/27,102.216.36.0/28,102.216.36.128/28,144.126.193.139/32";

const STRIPE_API: &str = "https://api.stripe.com";

fn shown(value: &Option<Secret>) -> String {
    value
        .as_ref()
        .map_or_else(|| "(not set)".into(), |_| "[redacted]".into())
}

impl DomainSettings for BillingSettings {
    fn redacted(&self) -> Vec<(&'static str, String)> {
        let off = || "(not set)".to_string();
        let pf = self.payfast.as_ref();
        let st = self.stripe.as_ref();
        vec![
            (
                "PAYFAST_MERCHANT_ID",
                pf.map_or_else(off, |p| p.merchant_id.clone()),
            ),
            (
                "PAYFAST_MERCHANT_KEY",
                pf.map_or_else(off, |_| "[redacted]".into()),
            ),
            (
                "PAYFAST_PASSPHRASE",
                pf.map_or_else(off, |p| shown(&p.passphrase)),
            ),
            (
                "PAYFAST_MODE",
                pf.map_or_else(off, |p| match p.mode {
                    PayFastMode::Sandbox => "sandbox".into(),
                    PayFastMode::Live => "live".into(),
                }),
            ),
            (
                "PAYFAST_PROCESS_URL",
                pf.map_or_else(off, |p| p.process_url.clone()),
            ),
            (
                "PAYFAST_VALIDATE_URL",
                pf.map_or_else(off, |p| p.validate_url.clone()),
            ),
            (
                "PAYFAST_API_URL",
                pf.map_or_else(off, |p| p.api_url.clone()),
            ),
            (
                "PAYFAST_VALID_SOURCES",
                pf.map_or_else(off, |p| {
                    let nets: Vec<String> = p.valid_sources.iter().map(|n| n.to_string()).collect();
                    nets.join(",")
                }),
            ),
            (
                "STRIPE_SECRET_KEY",
                st.map_or_else(off, |_| "[redacted]".into()),
            ),
            (
                "STRIPE_WEBHOOK_SECRET",
                st.map_or_else(off, |_| "[redacted]".into()),
            ),
            (
                "STRIPE_API_BASE",
                st.map_or_else(off, |s| s.api_base.clone()),
            ),
            ("BILLING_GRACE_DAYS", self.grace_days.to_string()),
        ]
    }
}

/// Reads the billing settings (the billing domain's settings reader).
pub fn read(r: &mut Reader<'_>, core: &Core) -> Arc<dyn DomainSettings> {
    let grace_days = r.parsed("BILLING_GRACE_DAYS", 7u32, "a whole number of days", "7");
    if !(1..=90).contains(&grace_days) {
        r.problem("BILLING_GRACE_DAYS", "must be between 1 and 90", "7");
    }
    Arc::new(BillingSettings {
        payfast: payfast(r, core.env),
        stripe: stripe(r, core.env),
        grace_days: grace_days.clamp(1, 90),
    })
}

/// A URL setting: `default` when unset, a problem unless http(s).
fn url(r: &mut Reader<'_>, var: &'static str, default: &str, example: &'static str) -> String {
    let value = r.raw(var).unwrap_or_else(|| default.to_owned());
    match url::Url::parse(value.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => value.trim().to_owned(),
        _ => {
            r.problem(var, format!("`{value}` is not an http(s) URL"), example);
            default.to_owned()
        }
    }
}

fn payfast(r: &mut Reader<'_>, env: Environment) -> Option<PayFastSettings> {
    let id = r.raw("PAYFAST_MERCHANT_ID");
    let key = r.raw("PAYFAST_MERCHANT_KEY");
    let (id, key) = match (id, key) {
        (Some(id), Some(key)) => (id.trim().to_owned(), key),
        (None, None) => return None,
        (id, _) => {
            if env == Environment::Production {
                let var = if id.is_none() {
                    "PAYFAST_MERCHANT_ID"
                } else {
                    "PAYFAST_MERCHANT_KEY"
                };
                r.problem(
                    var,
                    "PayFast is half configured: set both PAYFAST_MERCHANT_ID and \
                     PAYFAST_MERCHANT_KEY, or neither",
                    "10000100",
                );
            }
            return None;
        }
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        r.problem("PAYFAST_MERCHANT_ID", "must be digits", "10000100");
    }
    let mode = match r.raw("PAYFAST_MODE").map(|m| m.trim().to_ascii_lowercase()) {
        None if env == Environment::Production => PayFastMode::Live,
        None => PayFastMode::Sandbox,
        Some(m) if m == "sandbox" => PayFastMode::Sandbox,
        Some(m) if m == "live" => PayFastMode::Live,
        Some(m) => {
            r.problem(
                "PAYFAST_MODE",
                format!("`{m}` is not sandbox or live"),
                "sandbox",
            );
            PayFastMode::Sandbox
        }
    };
    let host = match mode {
        PayFastMode::Sandbox => "https://sandbox.payfast.co.za",
        PayFastMode::Live => "https://www.payfast.co.za",
    };
    let sources = r.raw("PAYFAST_VALID_SOURCES");
    let mut valid_sources = Vec::new();
    for item in sources.as_deref().unwrap_or(PAYFAST_SOURCES).split(',') {
        let item = item.trim();
        match item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(net) => valid_sources.push(net),
            Err(_) => r.problem(
                "PAYFAST_VALID_SOURCES",
                format!("`{item}` is not a CIDR or an address"),
                "197.97.145.144/28,41.74.179.192/27",
            ),
        }
    }
    Some(PayFastSettings {
        merchant_id: id,
        merchant_key: Secret::new(key.trim()),
        passphrase: r.raw("PAYFAST_PASSPHRASE").map(Secret::new),
        mode,
        process_url: url(
            r,
            "PAYFAST_PROCESS_URL",
            &format!("{host}/eng/process"),
            "https://sandbox.payfast.co.za/eng/process",
        ),
        validate_url: url(
            r,
            "PAYFAST_VALIDATE_URL",
            &format!("{host}/eng/query/validate"),
            "https://sandbox.payfast.co.za/eng/query/validate",
        ),
        api_url: url(
            r,
            "PAYFAST_API_URL",
            "https://api.payfast.co.za",
            "https://api.payfast.co.za",
        ),
        valid_sources,
    })
}

fn stripe(r: &mut Reader<'_>, env: Environment) -> Option<StripeSettings> {
    let key = r.raw("STRIPE_SECRET_KEY");
    let hook = r.raw("STRIPE_WEBHOOK_SECRET");
    let api_base = url(r, "STRIPE_API_BASE", STRIPE_API, STRIPE_API);
    match (key, hook) {
        (Some(key), Some(hook)) => Some(StripeSettings {
            secret_key: Secret::new(key.trim()),
            webhook_secret: Secret::new(hook.trim()),
            api_base: api_base.trim_end_matches('/').to_owned(),
        }),
        (None, None) => None,
        (key, _) => {
            if env == Environment::Production {
                let var = if key.is_none() {
                    "STRIPE_SECRET_KEY"
                } else {
                    "STRIPE_WEBHOOK_SECRET"
                };
                r.problem(
                    var,
                    "Stripe is half configured: set both STRIPE_SECRET_KEY and \
                     STRIPE_WEBHOOK_SECRET, or neither",
                    "sk_live_…",
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_from(vars: &[(&str, &str)], env: Environment) -> (BillingSettings, Vec<String>) {
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut r = Reader::new(&lookup);
        let core = Core {
            env,
            public_base_url: url::Url::parse("https://capecontrol.example").unwrap(),
        };
        let settings = BillingSettings {
            payfast: payfast(&mut r, core.env),
            stripe: stripe(&mut r, core.env),
            grace_days: 7,
        };
        let problems = r
            .into_problems()
            .into_iter()
            .map(|p| p.var.to_owned())
            .collect();
        (settings, problems)
    }

    #[test]
    fn secrets_are_redacted_and_urls_default_from_the_mode() {
        let (s, problems) = read_from(
            &[
                ("PAYFAST_MERCHANT_ID", "10000100"),
                ("PAYFAST_MERCHANT_KEY", "merchant-key-value"),
                ("PAYFAST_PASSPHRASE", "passphrase-value"),
                ("STRIPE_SECRET_KEY", "sk_test_value"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_value"),
            ],
            Environment::Test,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let shown = format!("{:?} {:?}", s.redacted(), s);
        for secret in [
            "merchant-key-value",
            "passphrase-value",
            "sk_test_value",
            "whsec_value",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let pf = s.payfast.unwrap();
        assert_eq!(pf.mode, PayFastMode::Sandbox);
        assert_eq!(
            pf.validate_url,
            "https://sandbox.payfast.co.za/eng/query/validate"
        );
        assert_eq!(pf.valid_sources.len(), 5);
    }

    #[test]
    fn a_half_configured_provider_is_off_and_a_start_up_error_in_production() {
        let vars = [
            ("PAYFAST_MERCHANT_ID", "10000100"),
            ("STRIPE_SECRET_KEY", "sk"),
        ];
        let (s, problems) = read_from(&vars, Environment::Test);
        assert!(s.payfast.is_none() && s.stripe.is_none() && problems.is_empty());
        let (s, problems) = read_from(&vars, Environment::Production);
        assert!(s.payfast.is_none());
        assert_eq!(problems, ["PAYFAST_MERCHANT_KEY", "STRIPE_WEBHOOK_SECRET"]);
        let (s, _) = read_from(
            &[("PAYFAST_MERCHANT_ID", "1"), ("PAYFAST_MERCHANT_KEY", "k")],
            Environment::Production,
        );
        assert_eq!(s.payfast.unwrap().mode, PayFastMode::Live);
    }
}
