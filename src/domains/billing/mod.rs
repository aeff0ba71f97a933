//! Billing: the plan and credit catalogue, subscriptions, checkout through PayFast and Stripe,
//! their notifications (verified, then applied exactly once), invoices and the double-entry
//! ledger, plan quotas for other domains (`quota`), and the yearly renewal reminder (a scheduled
//! job). Money is integer cents in ZAR. See docs/billing.md.

pub mod calendar;
pub mod credits;
pub mod emails;
pub mod itn;
pub mod ledger;
pub mod paid;
pub mod payfast;
pub mod payfast_api;
pub mod quota;
pub mod refund;
pub mod reminders;
pub mod service;
pub mod settings;
pub mod stripe;
pub mod types;
pub mod webhook;

mod refund_store;
mod reversal;
mod routes;
mod store;

use crate::{
    config::Config,
    domain::Domain,
    edge::policy::{RouteClass, RouteRule},
    state::{AppState, Provided},
};

/// The registry entry. Provider notifications are webhooks: banned clients and in-flight caps
/// apply, per-IP rate limits do not (PayFast retries in bursts from a few addresses).
pub const DOMAIN: Domain = Domain {
    settings: Some(settings::read),
    provide,
    routes: routes::routes,
    route_classes: &[
        RouteRule::exact("/api/payments/payfast/itn", RouteClass::Webhook),
        RouteRule::exact("/api/payments/stripe/webhook", RouteClass::Webhook),
    ],
    jobs: reminders::register,
    features,
    ..Domain::new("billing")
};

fn provide(config: &Config, provided: &mut Provided) -> anyhow::Result<()> {
    let billing = config.domain::<settings::BillingSettings>();
    if let Some(pf) = &billing.payfast {
        provided.insert(payfast::PayFastClient::new(pf)?);
        provided.insert(payfast_api::PayFastApi::new(pf)?);
    }
    if let Some(st) = &billing.stripe {
        provided.insert(stripe::StripeClient::new(st)?);
    }
    Ok(())
}

fn features(state: &AppState) -> Vec<(&'static str, bool)> {
    let billing = state.config.domain::<settings::BillingSettings>();
    vec![
        ("payfast", billing.payfast.is_some()),
        ("stripe", billing.stripe.is_some()),
    ]
}
