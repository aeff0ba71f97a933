//! Refunds through the provider's API, reserve-then-confirm: a refund first claims its amount on
//! the invoice (`refund_reserved_cents`, under the invoice's row lock) and commits, then asks the
//! provider, then either confirms it (refunded, with all its effects in one transaction) or
//! releases the claim. Concurrent refunds of one invoice therefore never ask the provider for
//! more than was paid, and no transaction is held open while a provider answers.

use crate::{
    db::types::new_id,
    domains::{
        audit::{self, Event, RequestMeta},
        users::User,
    },
    error::AppError,
    state::AppState,
};

use super::{
    payfast_api::{PayFastApi, PayFastRefund},
    refund_store::{self, RefundRow},
    reversal::{self, Reversal},
    service,
    store::{self, InvoiceRow, OrderRow},
    stripe::{NewRefund, StripeClient},
    types::{Currency, RefundRequest, RefundView, MAX_REFUND_CENTS, REFUND_REASON},
};

/// Checks a refund request: the amount (when given) and the reason.
fn validate(req: &RefundRequest) -> Result<(Option<i64>, String), AppError> {
    let mut v = crate::http::validate::Validator::new();
    if let Some(a) = req.amount_cents {
        if !(1..=MAX_REFUND_CENTS).contains(&a) {
            v.error(
                "amount_cents",
                format!("must be between 1 and {MAX_REFUND_CENTS}"),
            );
        }
    }
    let reason = REFUND_REASON.check(&req.reason).unwrap_or_else(|e| {
        v.error("reason", e);
        String::new()
    });
    v.finish()?;
    Ok((req.amount_cents, reason))
}

/// What a claimed refund needs to be asked for and confirmed.
struct Claimed {
    refund: RefundRow,
    invoice: InvoiceRow,
    order: OrderRow,
}

/// What an admin asked for.
struct Ask<'a> {
    amount: Option<i64>,
    reason: String,
    key: Option<&'a str>,
}

/// What claiming a refund found.
enum Claim {
    /// A new refund, to ask the provider for.
    New(Box<Claimed>),
    /// The refund made before with the same idempotency key.
    Made(Box<RefundRow>),
}

/// Refunds (part of) invoice `id` through its provider, as `admin` asked; a retry with the same
/// `key` (and body) answers the refund made the first time.
#[tracing::instrument(skip_all, fields(invoice_id = %id, admin = %admin.id))]
pub async fn refund(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    id: &str,
    req: &RefundRequest,
    key: Option<&str>,
) -> Result<RefundView, AppError> {
    let (amount, reason) = validate(req)?;
    let asked = Ask {
        amount,
        reason,
        key,
    };
    let claimed = match claim(state, admin, id, asked).await? {
        Claim::New(claimed) => *claimed,
        Claim::Made(made) => return replay(state, *made).await,
    };
    match ask(state, &claimed).await {
        Ok(provider_refund_id) => confirm(state, meta, claimed, provider_refund_id).await,
        Err(e) => Err(release(state, meta, &claimed, e).await?),
    }
}

/// The provider refunded: the claim becomes a refund, with its effects, in one transaction.
async fn confirm(
    state: &AppState,
    meta: &RequestMeta,
    claimed: Claimed,
    provider_refund_id: Option<String>,
) -> Result<RefundView, AppError> {
    let now = state.clock.now_micros();
    let r = &claimed.refund;
    let mut tx = state.db.begin().await?;
    let mut invoice = store::lock_invoice(&mut tx, &r.invoice_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("invoice {} vanished during its refund", r.invoice_id))?;
    invoice.refund_reserved_cents -= r.amount_cents;
    refund_store::finish_refund(
        &mut tx,
        &r.id,
        "succeeded",
        provider_refund_id.as_deref(),
        now,
    )
    .await?;
    let change = Reversal {
        refund_id: &r.id,
        amount_cents: r.amount_cents,
        reason: &r.reason,
        actor: r.actor_id.as_deref(),
        origin: "admin",
    };
    let ended = reversal::apply(&mut tx, meta, &mut invoice, &claimed.order, &change, now).await?;
    tx.commit().await?;
    state.mail.wake();
    tracing::info!(invoice = %invoice.number, refund_id = %r.id, amount_cents = r.amount_cents,
        "a refund was made");
    if let Some(ended) = ended {
        service::stop_provider_billing(state, &ended).await;
    }
    Ok(RefundView {
        id: r.id.clone(),
        amount_cents: r.amount_cents,
        currency: Currency::Zar,
        reason: r.reason.clone(),
        provider_refund_id,
        invoice: service::invoice_view(invoice)?,
    })
}

/// The provider did not refund: the claim is released (the refund recorded `failed`, audited)
/// and the answer is a 503.
async fn release(
    state: &AppState,
    meta: &RequestMeta,
    claimed: &Claimed,
    why: String,
) -> Result<AppError, AppError> {
    let r = &claimed.refund;
    let mut tx = state.db.begin().await?;
    let mut invoice = store::lock_invoice(&mut tx, &r.invoice_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("invoice {} vanished during its refund", r.invoice_id))?;
    invoice.refund_reserved_cents -= r.amount_cents;
    store::set_invoice_refunds(&mut tx, &invoice).await?;
    refund_store::finish_refund(&mut tx, &r.id, "failed", None, state.clock.now_micros()).await?;
    let details = serde_json::json!({
        "invoice": invoice.number, "invoice_id": invoice.id, "refund_id": r.id,
        "amount_cents": r.amount_cents, "provider": invoice.provider,
    });
    let event = Event {
        actor: r.actor_id.as_deref(),
        ..Event::own(&invoice.user_id, "invoice_refund_failed")
    }
    .with(details)
    .failed();
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    tracing::warn!(invoice = %invoice.number, refund_id = %r.id, provider = %invoice.provider,
        error = %why, "a refund was not made");
    Ok(AppError::Unavailable(format!(
        "{} did not make refund {}: {why}",
        invoice.provider, r.id
    )))
}

/// The refund made before with the same idempotency key, and its invoice as it stands.
async fn replay(state: &AppState, made: RefundRow) -> Result<RefundView, AppError> {
    let invoice = store::invoice_by_id(state.db.pool(), &made.invoice_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("refund {} of no invoice", made.id))?;
    Ok(RefundView {
        id: made.id,
        amount_cents: made.amount_cents,
        currency: Currency::Zar,
        reason: made.reason,
        provider_refund_id: made.provider_refund_id,
        invoice: service::invoice_view(invoice)?,
    })
}

/// A refund made with the same key: answered again when the request is the same, else 409.
fn same_key(made: RefundRow, asked: &Ask<'_>) -> Result<Claim, AppError> {
    if made.status == "pending" {
        return Err(AppError::Conflict(
            "A refund with this Idempotency-Key is being made; look at the invoice shortly.".into(),
        ));
    }
    let same = made.reason == asked.reason && asked.amount.is_none_or(|a| a == made.amount_cents);
    if !same {
        return Err(AppError::Conflict(
            "This Idempotency-Key was already used for a different refund of this invoice.".into(),
        ));
    }
    Ok(Claim::Made(Box::new(made)))
}

/// Claims the refund's amount on the invoice and records it `pending`, in one transaction
/// under the invoice's row lock.
async fn claim(
    state: &AppState,
    admin: &User,
    id: &str,
    asked: Ask<'_>,
) -> Result<Claim, AppError> {
    let now = state.clock.now_micros();
    let mut tx = state.db.begin().await?;
    let mut invoice = store::lock_invoice(&mut tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound("No such invoice.".into()))?;
    if let Some(key) = asked.key {
        if let Some(made) = refund_store::refund_by_key(&mut tx, id, key).await? {
            return same_key(made, &asked);
        }
    }
    let left = invoice.amount_cents - invoice.refunded_cents - invoice.refund_reserved_cents;
    if !matches!(invoice.status.as_str(), "paid" | "partially_refunded") || left <= 0 {
        return Err(AppError::Conflict(format!(
            "Nothing is left to refund on invoice {} (refunded {} of {} cents, {} in flight).",
            invoice.number,
            invoice.refunded_cents,
            invoice.amount_cents,
            invoice.refund_reserved_cents
        )));
    }
    let amount = asked.amount.unwrap_or(left);
    if amount > left {
        return Err(AppError::invalid(
            "amount_cents",
            format!("must be at most {left}, what is left to refund on this invoice"),
        ));
    }
    let order = store::order_by_id(&mut *tx, &invoice.order_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("invoice {id} bills no order"))?;
    reversal::check_credits(&mut tx, &invoice, &order, amount).await?;
    provider_ready(state, &invoice)?;
    invoice.refund_reserved_cents += amount;
    store::set_invoice_refunds(&mut tx, &invoice).await?;
    let refund = RefundRow {
        id: new_id(),
        invoice_id: invoice.id.clone(),
        user_id: invoice.user_id.clone(),
        provider: invoice.provider.clone(),
        origin: "admin".into(),
        status: "pending".into(),
        amount_cents: amount,
        reason: asked.reason,
        actor_id: Some(admin.id.clone()),
        provider_refund_id: None,
        idempotency_key: asked.key.map(str::to_owned),
        created_at: now,
    };
    refund_store::insert_refund(&mut tx, &refund).await?;
    tx.commit().await?;
    Ok(Claim::New(Box::new(Claimed {
        refund,
        invoice,
        order,
    })))
}

/// Refuses (before anything is claimed) a refund its provider cannot be asked for.
fn provider_ready(state: &AppState, invoice: &InvoiceRow) -> Result<(), AppError> {
    let off = |name: &str| {
        AppError::NotConfigured(format!(
            "{name} is not configured on this server, so it cannot be asked to refund."
        ))
    };
    match invoice.provider.as_str() {
        "payfast" if state.provided.get::<PayFastApi>().is_none() => Err(off("PayFast")),
        "stripe" if state.provided.get::<StripeClient>().is_none() => Err(off("Stripe")),
        "stripe" if invoice.provider_reference.is_none() => Err(AppError::Conflict(
            "This Stripe invoice was paid before payment references were recorded: refund it \
             in Stripe's dashboard (its charge.refunded event records the refund here)."
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Asks the provider for the claimed refund: the provider's refund id (Stripe) on success.
async fn ask(state: &AppState, c: &Claimed) -> Result<Option<String>, String> {
    let r = &c.refund;
    match c.invoice.provider.as_str() {
        "payfast" => {
            let api = state.provided.get::<PayFastApi>().ok_or("PayFast is off")?;
            let refund = PayFastRefund {
                payment_id: &c.invoice.provider_payment_id,
                amount_cents: r.amount_cents,
                reason: &r.reason,
            };
            api.refund(&refund).await.map(|()| None)
        }
        "stripe" => {
            let api = state
                .provided
                .get::<StripeClient>()
                .ok_or("Stripe is off")?;
            let reference = c.invoice.provider_reference.clone().unwrap_or_default();
            let payment = if reference.starts_with("in_") {
                let paid_by = api.invoice_payment(&reference).await?;
                store::set_reference(state.db.pool(), &c.invoice.id, &paid_by)
                    .await
                    .map_err(|e| e.to_string())?;
                paid_by
            } else {
                reference
            };
            let refund = NewRefund {
                refund_id: &r.id,
                invoice_id: &c.invoice.id,
                payment: &payment,
                amount_cents: r.amount_cents,
                reason: &r.reason,
            };
            api.refund(&refund).await.map(|made| Some(made.id))
        }
        other => Err(format!("no refunds through {other}")),
    }
}

/// Applies a refund made at Stripe (its dashboard, or the echo of ours) from a `charge.refunded`
/// event: `total_refunded` is Stripe's running total for the charge, so only what is beyond
/// what we recorded (refunded and in flight) is applied. A repeat, an echo of our own refund, or
/// an older event arriving late finds nothing beyond it and is a duplicate.
pub async fn from_provider(
    state: &AppState,
    meta: &RequestMeta,
    invoice_id: &str,
    total_refunded: i64,
    provider_refund_id: &str,
) -> Result<bool, AppError> {
    let now = state.clock.now_micros();
    let mut tx = state.db.begin().await?;
    let Some(mut invoice) = store::lock_invoice(&mut tx, invoice_id).await? else {
        return Ok(false);
    };
    let known = invoice.refunded_cents + invoice.refund_reserved_cents;
    let amount = total_refunded.min(invoice.amount_cents) - known;
    if amount <= 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let order = store::order_by_id(&mut *tx, &invoice.order_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("invoice {invoice_id} bills no order"))?;
    let refund = RefundRow {
        id: new_id(),
        invoice_id: invoice.id.clone(),
        user_id: invoice.user_id.clone(),
        provider: invoice.provider.clone(),
        origin: "provider".into(),
        status: "succeeded".into(),
        amount_cents: amount,
        reason: "Refunded at the provider".into(),
        actor_id: None,
        provider_refund_id: Some(provider_refund_id.to_owned()),
        idempotency_key: None,
        created_at: now,
    };
    refund_store::insert_refund(&mut tx, &refund).await?;
    let change = Reversal {
        refund_id: &refund.id,
        amount_cents: amount,
        reason: &refund.reason,
        actor: None,
        origin: "provider",
    };
    reversal::apply(&mut tx, meta, &mut invoice, &order, &change, now).await?;
    tx.commit().await?;
    state.mail.wake();
    tracing::info!(invoice = %invoice.number, amount_cents = amount,
        "a refund made at the provider was recorded");
    Ok(true)
}
