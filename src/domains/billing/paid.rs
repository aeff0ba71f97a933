//! Applying a verified payment, whichever provider took it: exactly once (the provider's
//! payment id is claimed first), in one transaction with all its effects.

use chrono::{Datelike, Months};

use crate::{
    db::types::{from_micros, new_id, now_micros, to_micros},
    domains::{
        audit::{self, Event, RequestMeta},
        users,
    },
    error::AppError,
    mail::{self, Email},
    state::AppState,
};

use super::{
    emails::Template,
    ledger::{self, Entry, Posting},
    store::{self, InvoiceRow, OrderRow, SubscriptionRow},
    types::{Cycle, ItnResult},
};

/// A payment a provider confirmed.
#[derive(Debug, Clone)]
pub struct Payment {
    /// `payfast` or `stripe`.
    pub provider: &'static str,
    /// The provider's id of the payment (PayFast's `pf_payment_id`, Stripe's session id).
    pub payment_id: String,
    /// Our order.
    pub order_id: String,
    /// The provider's subscription token, if any.
    pub token: Option<String>,
    /// What a refund goes through, when it is not the payment id (Stripe's payment intent, or
    /// the subscription invoice of a subscription-mode session).
    pub reference: Option<String>,
}

/// Why a verified payment was not applied.
#[derive(Debug)]
pub enum Failure {
    /// A one-off order was already paid by another payment.
    AlreadyPaid,
    /// The order is gone.
    UnknownOrder,
    /// The database or a bug.
    App(AppError),
}

impl<E: Into<AppError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::App(e.into())
    }
}

/// Opens the transaction of notification `v` (its `status`), claiming its payment id first:
/// `None` (rolled back) when it was claimed before, else the transaction and the order.
async fn claim(
    state: &AppState,
    v: &Payment,
    status: &str,
    now: i64,
) -> Result<Option<(sqlx::Transaction<'static, sqlx::Any>, OrderRow)>, Failure> {
    let mut tx = state.db.begin().await?;
    let claimed =
        store::claim_notification(&mut tx, v.provider, &v.payment_id, status, &v.order_id, now)
            .await?;
    if !claimed {
        tx.rollback().await?;
        return Ok(None);
    }
    let order = store::order_by_id(&mut *tx, &v.order_id)
        .await?
        .ok_or(Failure::UnknownOrder)?;
    Ok(Some((tx, order)))
}

/// Pays the order once: invoice, ledger, plan or credits, receipt, audit.
pub async fn pay(state: &AppState, meta: &RequestMeta, v: &Payment) -> Result<ItnResult, Failure> {
    let now = now_micros();
    let Some((mut tx, order)) = claim(state, v, "COMPLETE", now).await? else {
        return Ok(ItnResult::Duplicate);
    };
    if order.kind == "credits" && order.status == "paid" {
        tx.rollback().await?;
        return Err(Failure::AlreadyPaid);
    }
    let number = store::next_invoice_number(&mut tx, from_micros(now).year()).await?;
    let invoice = InvoiceRow {
        id: new_id(),
        user_id: order.user_id.clone(),
        order_id: order.id.clone(),
        number: format!("CC-{}-{number:06}", from_micros(now).year()),
        status: "paid".into(),
        amount_cents: order.amount_cents,
        refunded_cents: 0,
        description: order.description.clone(),
        provider: v.provider.into(),
        provider_payment_id: v.payment_id.clone(),
        provider_reference: v.reference.clone(),
        refund_reserved_cents: 0,
        created_at: now,
        paid_at: Some(now),
    };
    store::insert_invoice(&mut tx, &invoice).await?;
    ledger::post(&mut tx, &posting(&order, &invoice), now)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    if order.status == "pending" {
        store::mark_order_paid(&mut tx, &order.id, now).await?;
    }
    if order.kind == "subscription" {
        extend(&mut tx, &order, v, now).await?;
    }
    if let Some(user) = users::service::user_by_id(&mut *tx, &order.user_id).await? {
        let email = Email {
            to: user.email,
            template: Template::Receipt {
                number: invoice.number.clone(),
                description: invoice.description.clone(),
                amount_cents: invoice.amount_cents,
            },
        };
        mail::enqueue(&mut tx, &email).await?;
    }
    let details = serde_json::json!({
        "provider": v.provider, "invoice": invoice.number, "amount_cents": invoice.amount_cents,
        "order_id": order.id,
    });
    let event = Event {
        actor: None,
        ..Event::own(&order.user_id, "payment_received")
    }
    .with(details);
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    state.mail.wake();
    tracing::info!(provider = v.provider, order_id = %order.id, invoice = %invoice.number,
        amount_cents = invoice.amount_cents, "a payment was applied");
    Ok(ItnResult::Applied)
}

/// The ledger transaction of a paid invoice: the provider holds the money; a plan earns it as
/// revenue, a credit pack owes it to the customer as credit (with any bonus as promotion).
fn posting<'a>(order: &OrderRow, invoice: &'a InvoiceRow) -> Posting<'a> {
    let paid = invoice.amount_cents;
    let mut entries = vec![Entry::platform(ledger::PROVIDER_CLEARING, paid)];
    let kind = if order.kind == "credits" {
        entries.push(Entry::user(
            ledger::CUSTOMER_CREDITS,
            &order.user_id,
            -order.credit_cents,
        ));
        if order.credit_cents != paid {
            entries.push(Entry::platform(
                ledger::PROMOTIONAL_CREDITS,
                order.credit_cents - paid,
            ));
        }
        "credit_purchase"
    } else {
        entries.push(Entry::platform(ledger::PLATFORM_REVENUE, -paid));
        "subscription_payment"
    };
    Posting {
        kind,
        description: &invoice.description,
        reference: &invoice.id,
        entries,
    }
}

/// Starts or extends the paid period: a renewal of the running plan extends from its end,
/// anything else starts now.
async fn extend(
    conn: &mut sqlx::AnyConnection,
    order: &OrderRow,
    payment: &Payment,
    now: i64,
) -> Result<(), AppError> {
    // Safe to read then write: this transaction already holds the invoice counter's row (taken
    // in `pay`), so paying transactions run one after the other and this read sees the period
    // any earlier payment extended.
    let current = store::subscription(&mut *conn, &order.user_id).await?;
    let cycle = order
        .cycle
        .as_deref()
        .and_then(Cycle::parse)
        .unwrap_or(Cycle::Monthly);
    let start = current
        .as_ref()
        .filter(|s| s.plan == order.product && s.status != "canceled")
        .and_then(|s| s.current_period_end)
        .filter(|end| *end > now)
        .unwrap_or(now);
    let end = from_micros(start)
        .checked_add_months(Months::new(cycle.months()))
        .ok_or_else(|| anyhow::anyhow!("a period end beyond the calendar"))?;
    let row = SubscriptionRow {
        user_id: order.user_id.clone(),
        plan: order.product.clone(),
        cycle: Some(cycle.as_str().to_owned()),
        status: "active".into(),
        current_period_start: Some(start),
        current_period_end: Some(to_micros(end)),
        cancel_at_period_end: false,
        provider: Some(payment.provider.into()),
        provider_token: payment
            .token
            .clone()
            .or_else(|| current.and_then(|c| c.provider_token)),
    };
    store::save_subscription(conn, &row, now).await?;
    Ok(())
}

/// The provider ended a subscription: it runs to the end of the paid period, then is free.
pub async fn cancel(
    state: &AppState,
    meta: &RequestMeta,
    v: &Payment,
) -> Result<ItnResult, Failure> {
    let now = now_micros();
    let Some((mut tx, order)) = claim(state, v, "CANCELLED", now).await? else {
        return Ok(ItnResult::Duplicate);
    };
    let Some(current) = store::subscription(&mut *tx, &order.user_id)
        .await?
        .filter(|s| s.plan == order.product && s.status != "canceled")
    else {
        tx.commit().await?;
        return Ok(ItnResult::Ignored);
    };
    let row = SubscriptionRow {
        status: "canceled".into(),
        cancel_at_period_end: true,
        ..current
    };
    store::save_subscription(&mut tx, &row, now).await?;
    let event = Event {
        actor: None,
        ..Event::own(&order.user_id, "subscription_canceled")
    }
    .with(serde_json::json!({"provider": v.provider, "order_id": order.id}));
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    Ok(ItnResult::Applied)
}
