//! The effects of a refund, in the caller's transaction: the invoice's refunded cents and
//! status, a balanced ledger transaction, the credits of a credit pack taken back, a plan ended
//! at once by a full refund, the customer's email and an audit row.

use sqlx::AnyConnection;

use crate::{
    domains::{
        audit::{self, Event, RequestMeta},
        users,
    },
    error::AppError,
    mail::{self, Email},
};

use super::{
    emails::Template,
    ledger::{self, Entry, Posting},
    store::{self, InvoiceRow, OrderRow, SubscriptionRow},
};

/// One refund to apply.
#[derive(Debug, Clone, Copy)]
pub struct Reversal<'a> {
    /// Our refund id.
    pub refund_id: &'a str,
    /// How much, in cents.
    pub amount_cents: i64,
    /// Why.
    pub reason: &'a str,
    /// The admin who made it, if it was made here.
    pub actor: Option<&'a str>,
    /// `admin` or `provider`.
    pub origin: &'a str,
}

/// The credit cents a credit pack owes for `refunded` of its price refunded: the pack's credit
/// in proportion, rounded down, so that a full refund takes back exactly all of it.
fn credits_taken(order: &OrderRow, invoice: &InvoiceRow, refunded: i64) -> i64 {
    if invoice.amount_cents == 0 {
        return 0;
    }
    let taken =
        i128::from(order.credit_cents) * i128::from(refunded) / i128::from(invoice.amount_cents);
    i64::try_from(taken).unwrap_or(i64::MAX)
}

/// The credit cents refunding `amount` more of a credit-pack invoice takes back.
fn credits_for(order: &OrderRow, invoice: &InvoiceRow, amount: i64) -> i64 {
    let before = invoice.refunded_cents;
    credits_taken(order, invoice, before + amount) - credits_taken(order, invoice, before)
}

/// Refuses (409) to refund a credit pack beyond the customer's unspent balance: the money would
/// go back for credit already used. Plans pass.
pub async fn check_credits(
    conn: &mut AnyConnection,
    invoice: &InvoiceRow,
    order: &OrderRow,
    amount: i64,
) -> Result<(), AppError> {
    if order.kind != "credits" {
        return Ok(());
    }
    let taken = credits_for(order, invoice, amount);
    let balance = ledger::credit_balance(&mut *conn, &invoice.user_id).await?;
    if taken > balance {
        return Err(AppError::Conflict(format!(
            "The customer has {balance} credit cents left; refunding {amount} cents of this pack \
             would take back {taken}. Refund less."
        )));
    }
    Ok(())
}

/// Applies `r` to `invoice` (already locked by the caller); answers the subscription a full
/// refund ended, whose provider should stop billing it.
pub async fn apply(
    conn: &mut AnyConnection,
    meta: &RequestMeta,
    invoice: &mut InvoiceRow,
    order: &OrderRow,
    r: &Reversal<'_>,
    now: i64,
) -> Result<Option<SubscriptionRow>, AppError> {
    let taken = credits_for(order, invoice, r.amount_cents);
    invoice.refunded_cents += r.amount_cents;
    let full = invoice.refunded_cents >= invoice.amount_cents;
    invoice.status = if full {
        "refunded"
    } else {
        "partially_refunded"
    }
    .into();
    store::set_invoice_refunds(conn, invoice).await?;
    ledger::post(conn, &posting(order, invoice, r, taken), now)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let ended = if full && order.kind == "subscription" {
        downgrade(conn, order, now).await?
    } else {
        None
    };
    if let Some(user) = users::service::user_by_id(&mut *conn, &invoice.user_id).await? {
        let email = Email {
            to: user.email,
            template: Template::Refund {
                number: invoice.number.clone(),
                amount_cents: r.amount_cents,
                full,
            },
        };
        mail::enqueue(conn, &email).await?;
    }
    let details = serde_json::json!({
        "invoice": invoice.number, "invoice_id": invoice.id, "refund_id": r.refund_id,
        "amount_cents": r.amount_cents, "provider": invoice.provider, "origin": r.origin,
        "reason": r.reason, "credits_taken": taken, "plan_ended": ended.is_some(),
    });
    let event = Event {
        actor: r.actor,
        ..Event::own(&invoice.user_id, "invoice_refunded")
    }
    .with(details);
    audit::record(conn, meta, event).await?;
    Ok(ended)
}

/// The refund's ledger transaction: the provider pays the money back out of clearing; for a
/// plan it is a refund (contra-revenue), for a credit pack the credit it bought is taken back
/// (and the bonus with it, from promotion).
fn posting<'a>(
    order: &OrderRow,
    invoice: &'a InvoiceRow,
    r: &Reversal<'_>,
    taken: i64,
) -> Posting<'a> {
    let mut entries = vec![Entry::platform(ledger::PROVIDER_CLEARING, -r.amount_cents)];
    if order.kind == "credits" {
        entries.push(Entry::user(
            ledger::CUSTOMER_CREDITS,
            &invoice.user_id,
            taken,
        ));
        if taken != r.amount_cents {
            entries.push(Entry::platform(
                ledger::PROMOTIONAL_CREDITS,
                r.amount_cents - taken,
            ));
        }
    } else {
        entries.push(Entry::platform(ledger::REFUNDS, r.amount_cents));
    }
    Posting {
        kind: "refund",
        description: &invoice.description,
        reference: &invoice.id,
        entries,
    }
}

/// Ends the refunded plan at once: back to free when the plan in effect is the one refunded.
/// Answers the subscription as it was, for its provider to stop billing it.
async fn downgrade(
    conn: &mut AnyConnection,
    order: &OrderRow,
    now: i64,
) -> Result<Option<SubscriptionRow>, AppError> {
    // The account's subscription row first, as every change of it does (see `store`).
    store::lock_subscription(&mut *conn, &order.user_id, now).await?;
    let Some(current) = store::subscription(&mut *conn, &order.user_id)
        .await?
        .filter(|s| s.plan == order.product)
    else {
        return Ok(None);
    };
    let free = SubscriptionRow {
        user_id: order.user_id.clone(),
        plan: "free".into(),
        cycle: None,
        status: "active".into(),
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        provider: None,
        provider_token: None,
        period_anchor: None,
        paid_months: 0,
        order_id: None,
    };
    store::save_subscription(conn, &free, now).await?;
    Ok(Some(current))
}
