//! Applying a verified payment, whichever provider took it: exactly once (the provider's
//! payment id is claimed first), in one transaction with all its effects.

use crate::{
    db::types::new_id,
    domains::{
        audit::{self, Event, RequestMeta},
        users,
    },
    error::AppError,
    mail::{self, Email},
    state::AppState,
};

use super::{
    calendar,
    emails::Template,
    ledger::{self, Entry, Posting},
    service,
    store::{self, InvoiceRow, OrderRow, SubscriptionRow},
    types::{Cycle, ItnResult},
};

/// A payment a provider confirmed.
#[derive(Debug, Clone)]
pub struct Payment {
    /// `payfast` or `stripe`.
    pub provider: &'static str,
    /// The provider's id of the payment (PayFast's `pf_payment_id`, Stripe's session or
    /// invoice id).
    pub payment_id: String,
    /// Our order.
    pub order_id: String,
    /// The provider's subscription token, if any (PayFast's `token`, Stripe's `sub_…`).
    pub token: Option<String>,
    /// What a refund goes through, when it is not the payment id (Stripe's payment intent, or
    /// the subscription invoice of a subscription-mode session).
    pub reference: Option<String>,
}

impl Payment {
    /// Whether this payment may apply to `order`: once a subscription order was paid with a
    /// provider token, every later payment of it must name the same one (a renewal of another
    /// subscription, or a forged one, must not extend this one).
    fn token_matches(&self, order: &OrderRow) -> bool {
        order.kind != "subscription"
            || order
                .provider_token
                .as_deref()
                .is_none_or(|kept| self.token.as_deref() == Some(kept))
    }
}

/// Why a verified payment was not applied.
#[derive(Debug)]
pub enum Failure {
    /// A one-off order was already paid by another payment.
    AlreadyPaid,
    /// The order is gone.
    UnknownOrder,
    /// A subscription order was paid with another provider token than this payment names.
    TokenMismatch,
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
///
/// The invoice number is taken last: the year's counter row is held from then until commit, so
/// concurrent payments queue only for the few statements after it, not for the whole payment.
/// What must not interleave within one account (extending its period) is ordered by the
/// account's subscription row, taken first.
pub async fn pay(state: &AppState, meta: &RequestMeta, v: &Payment) -> Result<ItnResult, Failure> {
    let now = state.clock.now_micros();
    let Some((mut tx, order)) = claim(state, v, "COMPLETE", now).await? else {
        return Ok(ItnResult::Duplicate);
    };
    if order.kind == "credits" && order.status == "paid" {
        tx.rollback().await?;
        return Err(Failure::AlreadyPaid);
    }
    if !v.token_matches(&order) {
        tx.rollback().await?;
        return Err(Failure::TokenMismatch);
    }
    if order.kind == "subscription" {
        store::lock_subscription(&mut tx, &order.user_id, now).await?;
    }
    let year = calendar::year_of(now);
    let mut invoice = InvoiceRow {
        id: new_id(),
        user_id: order.user_id.clone(),
        order_id: order.id.clone(),
        number: String::new(),
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
    ledger::post(&mut tx, &posting(&order, &invoice), now)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    if order.status == "pending" {
        store::mark_order_paid(&mut tx, &order.id, now).await?;
    }
    if order.kind == "subscription" {
        if let (None, Some(token)) = (&order.provider_token, &v.token) {
            store::keep_order_token(&mut tx, &order.id, token).await?;
        }
        extend(&mut tx, &order, v, now, service::grace(state)).await?;
    }
    let user = users::service::user_by_id(&mut *tx, &order.user_id).await?;
    // From here to commit the year's invoice counter is held.
    let number = store::next_invoice_number(&mut tx, year).await?;
    invoice.number = format!("CC-{year}-{number:06}");
    store::insert_invoice(&mut tx, &invoice).await?;
    if let Some(user) = user {
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

/// Starts or extends the paid period.
///
/// A payment for the plan the account is on (a renewal of the order that keeps it running, or
/// another order of that plan while its period or grace runs) adds its months to the
/// subscription, and the period ends at the anchor plus every month paid: the order payments
/// arrive in does not matter, and a period anchored on the 31st ends on the last day of a
/// shorter month and on the 31st again after it. Anything else starts a new subscription now.
/// A renewal keeps the status and the cancel flag (a payment taken before a cancellation does
/// not undo it); a new order starts active, unless its provider already said it was cancelled.
async fn extend(
    conn: &mut sqlx::AnyConnection,
    order: &OrderRow,
    payment: &Payment,
    now: i64,
    grace: i64,
) -> Result<(), AppError> {
    // Safe to read then write: `pay` took this account's subscription row first, so payments
    // of one account run one after the other and this read sees what any earlier one wrote.
    let current = store::subscription(&mut *conn, &order.user_id).await?;
    let cycle = order
        .cycle
        .as_deref()
        .and_then(Cycle::parse)
        .unwrap_or(Cycle::Monthly);
    let months = i64::from(cycle.months());
    // `order` was read before this payment marked it paid: paid already means a renewal.
    let renewal = order.status == "paid";
    let provider_canceled = order.canceled_at.is_some();
    let continued = current.as_ref().filter(|s| {
        let running = s
            .current_period_end
            .is_some_and(|end| end.saturating_add(grace) > now);
        let same_order = s.order_id.as_deref() == Some(order.id.as_str());
        s.plan == order.product
            && s.period_anchor.is_some()
            && s.paid_months > 0
            && ((renewal && same_order) || running)
    });
    let (anchor, paid_months, status, cancel, order_id) = match continued {
        Some(s) if renewal && s.order_id.as_deref() == Some(order.id.as_str()) => (
            s.period_anchor.unwrap_or(now),
            s.paid_months + months,
            if s.status == "canceled" || provider_canceled {
                "canceled"
            } else {
                "active"
            },
            s.cancel_at_period_end || provider_canceled,
            order.id.clone(),
        ),
        Some(s) => (
            s.period_anchor.unwrap_or(now),
            s.paid_months + months,
            if provider_canceled {
                "canceled"
            } else {
                "active"
            },
            provider_canceled,
            order.id.clone(),
        ),
        None => (
            now,
            months,
            if provider_canceled {
                "canceled"
            } else {
                "active"
            },
            provider_canceled,
            order.id.clone(),
        ),
    };
    let after = |months: i64| {
        u32::try_from(months)
            .ok()
            .and_then(|m| calendar::add_months(anchor, m))
            .ok_or_else(|| anyhow::anyhow!("a period end beyond the calendar"))
    };
    let row = SubscriptionRow {
        user_id: order.user_id.clone(),
        plan: order.product.clone(),
        cycle: Some(cycle.as_str().to_owned()),
        status: status.into(),
        current_period_start: Some(after(paid_months - months)?),
        current_period_end: Some(after(paid_months)?),
        cancel_at_period_end: cancel,
        provider: Some(payment.provider.into()),
        provider_token: payment
            .token
            .clone()
            .or_else(|| current.and_then(|c| c.provider_token)),
        period_anchor: Some(anchor),
        paid_months,
        order_id: Some(order_id),
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
    let now = state.clock.now_micros();
    let Some((mut tx, order)) = claim(state, v, "CANCELLED", now).await? else {
        return Ok(ItnResult::Duplicate);
    };
    // Kept with the order, so a payment of it delivered after this still ends canceled.
    store::mark_order_canceled(&mut tx, &order.id, now).await?;
    store::lock_subscription(&mut tx, &order.user_id, now).await?;
    let Some(current) = store::subscription(&mut *tx, &order.user_id)
        .await?
        .filter(|s| {
            s.plan == order.product
                && s.status != "canceled"
                && s.order_id.as_deref().is_none_or(|o| o == order.id)
        })
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

/// The provider could not collect a renewal (Stripe's `invoice.payment_failed`): the running
/// subscription of the order's plan is `past_due` until a payment arrives. Once per invoice; an
/// invoice that was already paid (a late failure notice) changes nothing.
pub async fn past_due(
    state: &AppState,
    meta: &RequestMeta,
    v: &Payment,
) -> Result<ItnResult, Failure> {
    let now = state.clock.now_micros();
    let Some((mut tx, order)) = claim(state, v, "FAILED", now).await? else {
        return Ok(ItnResult::Duplicate);
    };
    if !v.token_matches(&order) {
        tx.rollback().await?;
        return Err(Failure::TokenMismatch);
    }
    let paid = store::notification_seen(&mut tx, v.provider, &v.payment_id, "COMPLETE").await?;
    let current = store::subscription(&mut *tx, &order.user_id)
        .await?
        .filter(|s| s.plan == order.product && s.status != "canceled")
        .filter(|s| s.provider.as_deref() == Some(v.provider));
    let Some(current) = current.filter(|_| !paid) else {
        tx.commit().await?;
        return Ok(ItnResult::Ignored);
    };
    let row = SubscriptionRow {
        status: "past_due".into(),
        ..current
    };
    store::save_subscription(&mut tx, &row, now).await?;
    let event = Event {
        actor: None,
        ..Event::own(&order.user_id, "subscription_past_due")
    }
    .with(serde_json::json!({
        "provider": v.provider, "order_id": order.id, "payment_id": v.payment_id,
    }));
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    tracing::info!(provider = v.provider, order_id = %order.id, payment_id = %v.payment_id,
        "a renewal was not paid: the subscription is past due");
    Ok(ItnResult::Applied)
}
