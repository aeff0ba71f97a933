//! Stripe's webhook: the `Stripe-Signature` is checked over the raw body before it is parsed;
//! `checkout.session.completed` pays its order (amount and currency checked against ours),
//! `invoice.paid` pays a renewal, `invoice.payment_failed` makes the subscription past due and
//! `customer.subscription.deleted` ends it, each exactly once (the session, invoice or
//! subscription id is claimed first); `charge.refunded` records a refund made at Stripe (or the
//! echo of ours) from the charge's running total, so it has one effect however often and in
//! whatever order it comes. Other events answer 200 and do nothing.

use serde_json::Value;

use crate::{
    domains::audit::{self, Event, Outcome, RequestMeta},
    error::AppError,
    state::AppState,
};

use super::{
    paid::{self, Failure, Payment},
    refund,
    settings::BillingSettings,
    store::{self, OrderRow},
    stripe,
    types::ItnResult,
};

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Off,
    Signature,
    Malformed,
    UnknownOrder,
    Amount,
    AlreadyPaid,
    Token,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Self::Off => "stripe_off",
            Self::Signature => "signature",
            Self::Malformed => "malformed",
            Self::UnknownOrder => "unknown_order",
            Self::Amount => "amount",
            Self::AlreadyPaid => "order_already_paid",
            Self::Token => "token_mismatch",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Off => "Stripe events are not accepted: Stripe is not configured.",
            Self::Signature => "The Stripe-Signature does not sign this body, or is too old.",
            Self::Malformed => "The event is not a Stripe event.",
            Self::UnknownOrder => "The event names no Stripe order of ours.",
            Self::Amount => "The event's amount or currency is not the order's.",
            Self::AlreadyPaid => "The order was already paid with another payment.",
            Self::Token => "The event's subscription is not the one the order was paid with.",
        }
    }
}

/// Handles one delivery: `signature` is the `Stripe-Signature` header, `body` the raw body.
pub async fn handle(
    state: &AppState,
    meta: &RequestMeta,
    signature: Option<&str>,
    body: &[u8],
) -> Result<ItnResult, AppError> {
    match verify_and_apply(state, meta, signature, body).await {
        Ok(result) => result,
        Err((refusal, event)) => {
            tracing::warn!(reason = refusal.code(), event = %event, client = %meta.ip,
                "a Stripe event was refused");
            let details = serde_json::json!({
                "provider": "stripe", "reason": refusal.code(), "event_id": event,
            });
            let mut tx = state.db.begin().await?;
            let event = Event {
                actor: None,
                action: "payment_notification_refused",
                target: None,
                outcome: Outcome::Failure,
                details,
            };
            audit::record(&mut tx, meta, event).await?;
            tx.commit().await?;
            Err(AppError::BadRequest(refusal.detail().into()))
        }
    }
}

type Refused = (Refusal, String);

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

async fn verify_and_apply(
    state: &AppState,
    meta: &RequestMeta,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Result<ItnResult, AppError>, Refused> {
    let unnamed = || String::new();
    let Some(settings) = state.config.domain::<BillingSettings>().stripe.as_ref() else {
        return Err((Refusal::Off, unnamed()));
    };
    let now = state.clock.now_micros() / 1_000_000;
    let secret = settings.webhook_secret.expose();
    if !signature.is_some_and(|s| stripe::signed(s, body, secret, now)) {
        return Err((Refusal::Signature, unnamed()));
    }
    let event: Value = serde_json::from_slice(body).map_err(|_| (Refusal::Malformed, unnamed()))?;
    let id: String = text(&event, "/id")
        .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect())
        .ok_or((Refusal::Malformed, unnamed()))?;
    let object = event.pointer("/data/object").cloned().unwrap_or_default();
    let kind = text(&event, "/type").unwrap_or_default();
    let result = match kind {
        "charge.refunded" => return charge_refunded(state, meta, &id, &object).await,
        "checkout.session.completed" | "customer.subscription.deleted" => {
            session(state, meta, &id, kind, &object).await?
        }
        "invoice.paid" | "invoice.payment_failed" => {
            invoice(state, meta, &id, kind, &object).await?
        }
        _ => return Ok(Ok(ItnResult::Ignored)),
    };
    match result {
        Ok(r) => Ok(Ok(r)),
        Err(Failure::AlreadyPaid) => Err((Refusal::AlreadyPaid, id)),
        Err(Failure::UnknownOrder) => Err((Refusal::UnknownOrder, id)),
        Err(Failure::TokenMismatch) => Err((Refusal::Token, id)),
        Err(Failure::App(e)) => Ok(Err(e)),
    }
}

/// What applying an event came to; the outer error is a refusal of the event itself.
type Applied = Result<Result<ItnResult, Failure>, Refused>;

/// Our Stripe order `order_id` names (of `kind` when given), or a refusal of event `id`.
async fn stripe_order(
    state: &AppState,
    id: &str,
    order_id: Option<&str>,
    kind: Option<&str>,
) -> Result<Result<OrderRow, Failure>, Refused> {
    let refused = || (Refusal::UnknownOrder, id.to_owned());
    let order_id = order_id
        .filter(|o| uuid::Uuid::try_parse(o).is_ok())
        .ok_or_else(refused)?;
    match store::order_by_id(state.db.pool(), order_id).await {
        Ok(Some(o)) if o.provider == "stripe" && kind.is_none_or(|k| o.kind == k) => Ok(Ok(o)),
        Ok(_) => Err(refused()),
        Err(e) => Ok(Err(e.into())),
    }
}

/// `checkout.session.completed` pays the session's order; `customer.subscription.deleted` ends
/// the subscription with its paid period.
async fn session(
    state: &AppState,
    meta: &RequestMeta,
    id: &str,
    kind: &str,
    object: &Value,
) -> Applied {
    let order_id =
        text(object, "/metadata/order_id").or_else(|| text(object, "/client_reference_id"));
    let object_id = text(object, "/id")
        .filter(|o| !o.is_empty() && o.len() <= 255)
        .ok_or_else(|| (Refusal::Malformed, id.to_owned()))?;
    let order = match stripe_order(state, id, order_id, None).await? {
        Ok(order) => order,
        Err(e) => return Ok(Err(e)),
    };
    let payment = Payment {
        provider: "stripe",
        payment_id: object_id.to_owned(),
        order_id: order.id.clone(),
        token: text(object, "/subscription").map(str::to_owned),
        // A payment-mode session names its payment intent; a subscription-mode one only its
        // first invoice, resolved to a payment intent when it is refunded.
        reference: text(object, "/payment_intent")
            .or_else(|| text(object, "/invoice"))
            .map(str::to_owned),
    };
    if kind == "customer.subscription.deleted" {
        return Ok(paid::cancel(state, meta, &payment).await);
    }
    check_amount(object, "/amount_total", &order, id)?;
    if text(object, "/payment_status") != Some("paid") {
        return Ok(Ok(ItnResult::Ignored));
    }
    Ok(paid::pay(state, meta, &payment).await)
}

/// `invoice.paid` pays a renewal of the subscription's order (the invoice id is the payment id,
/// so each invoice has one effect); `invoice.payment_failed` makes the subscription past due.
/// The order is the subscription's `metadata.order_id`, which Stripe snapshots on the invoice
/// (`parent.subscription_details` since API 2025-03-31, `subscription_details` before). The
/// first invoice (`billing_reason` `subscription_create`) is the checkout's own payment, applied
/// by `checkout.session.completed`: it is ignored here, whichever arrives first. So is an invoice
/// of no subscription.
async fn invoice(
    state: &AppState,
    meta: &RequestMeta,
    id: &str,
    kind: &str,
    object: &Value,
) -> Applied {
    let details = ["/parent/subscription_details", "/subscription_details"]
        .iter()
        .find_map(|p| object.pointer(p).filter(|d| d.is_object()))
        .cloned()
        .unwrap_or_default();
    let order_id = text(&details, "/metadata/order_id");
    let subscription = text(&details, "/subscription").or_else(|| text(object, "/subscription"));
    let invoice_id = text(object, "/id")
        .filter(|o| o.starts_with("in_") && o.len() <= 255)
        .ok_or_else(|| (Refusal::Malformed, id.to_owned()))?;
    // An invoice of no subscription (made by hand in Stripe's dashboard) is none of ours.
    let of_a_subscription = subscription.is_some() || details.is_object();
    if !of_a_subscription || text(object, "/billing_reason") == Some("subscription_create") {
        return Ok(Ok(ItnResult::Ignored));
    }
    let order = match stripe_order(state, id, order_id, Some("subscription")).await? {
        Ok(order) => order,
        Err(e) => return Ok(Err(e)),
    };
    let payment = Payment {
        provider: "stripe",
        payment_id: invoice_id.to_owned(),
        order_id: order.id.clone(),
        token: subscription.map(str::to_owned),
        // Refunded through its payment intent when the invoice names one (API versions before
        // 2025-03-31), else through the invoice, resolved when it is refunded.
        reference: Some(
            text(object, "/payment_intent")
                .unwrap_or(invoice_id)
                .to_owned(),
        ),
    };
    if kind == "invoice.payment_failed" {
        return Ok(paid::past_due(state, meta, &payment).await);
    }
    check_amount(object, "/amount_paid", &order, id)?;
    Ok(paid::pay(state, meta, &payment).await)
}

/// The amount at `pointer` must be the order's (within one cent), in rand.
fn check_amount(object: &Value, pointer: &str, order: &OrderRow, id: &str) -> Result<(), Refused> {
    let amount = object.pointer(pointer).and_then(Value::as_i64);
    let currency = text(object, "/currency");
    if amount.is_none_or(|a| (a - order.amount_cents).abs() > 1) || currency != Some("zar") {
        return Err((Refusal::Amount, id.to_owned()));
    }
    Ok(())
}

/// A charge was refunded at Stripe: its `amount_refunded` (a running total) beyond what we
/// recorded for its invoice is applied as a refund. A charge of no invoice of ours is ignored.
async fn charge_refunded(
    state: &AppState,
    meta: &RequestMeta,
    id: &str,
    charge: &Value,
) -> Result<Result<ItnResult, AppError>, Refused> {
    let total = charge.pointer("/amount_refunded").and_then(Value::as_i64);
    let (Some(total), Some("zar")) = (total, text(charge, "/currency")) else {
        return Err((Refusal::Amount, id.to_owned()));
    };
    let refs: Vec<&str> = ["/payment_intent", "/invoice", "/id"]
        .iter()
        .filter_map(|p| text(charge, p))
        .collect();
    let invoice = match store::invoice_by_reference(state.db.pool(), "stripe", &refs).await {
        Ok(Some(invoice)) => invoice,
        Ok(None) => {
            tracing::warn!(event = %id, "a refunded Stripe charge names no invoice of ours");
            return Ok(Ok(ItnResult::Ignored));
        }
        Err(e) => return Ok(Err(e.into())),
    };
    let refund_id = text(charge, "/refunds/data/0/id").unwrap_or(id);
    Ok(
        match refund::from_provider(state, meta, &invoice, total, refund_id).await {
            Ok(true) => Ok(ItnResult::Applied),
            Ok(false) => Ok(ItnResult::Duplicate),
            Err(e) => Err(e),
        },
    )
}
