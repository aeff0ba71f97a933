//! PayFast's notifications (ITN): verified four ways, then applied exactly once.
//!
//! A notification is believed only when (1) it comes from `PAYFAST_VALID_SOURCES`, (2) its
//! signature matches its fields as received and our passphrase, (3) it names our merchant id and
//! an order of ours with the order's amount (within one cent), and (4) PayFast's validation
//! endpoint answers `VALID` to it. Anything else is a 400, an audit row and a log line, and
//! changes nothing. A believed one is applied in one transaction that first claims its
//! `pf_payment_id` (a primary key): a repeat, even a concurrent one, finds it claimed and does
//! nothing.

use std::net::IpAddr;

use chrono::{Datelike, Months};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    db::types::{from_micros, new_id, now_micros, to_micros},
    domains::{
        audit::{self, Event, Outcome, RequestMeta},
        users,
    },
    error::AppError,
    mail::{self, Email},
    state::AppState,
};

use super::{
    emails::Template,
    ledger::{self, Entry, Posting},
    payfast::{self, PayFastClient},
    settings::BillingSettings,
    store::{self, InvoiceRow, OrderRow, SubscriptionRow},
    types::Cycle,
};

/// What a verified notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItnResult {
    /// It had its effect now.
    Applied,
    /// It had its effect before: nothing changed.
    Duplicate,
    /// A status with no effect here (`PENDING`, `FAILED`, or a cancel of nothing).
    Ignored,
}

/// The answer to PayFast.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItnAnswer {
    /// What the notification did.
    pub result: ItnResult,
}

/// Why a notification was refused (never echoing a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Off,
    Source(IpAddr),
    Signature,
    Missing(&'static str),
    Merchant,
    UnknownOrder,
    Amount { sent: String, expected: i64 },
    Unconfirmed(String),
    AlreadyPaid,
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Self::Off => "payfast_off",
            Self::Source(_) => "source_address",
            Self::Signature => "signature",
            Self::Missing(_) => "missing_field",
            Self::Merchant => "merchant_id",
            Self::UnknownOrder => "unknown_order",
            Self::Amount { .. } => "amount",
            Self::Unconfirmed(_) => "not_confirmed",
            Self::AlreadyPaid => "order_already_paid",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Off => {
                "PayFast notifications are not accepted: PayFast is not configured.".into()
            }
            Self::Source(ip) => format!("Notifications are not accepted from {ip}."),
            Self::Signature => "The notification's signature does not match its fields.".into(),
            Self::Missing(f) => format!("The notification has no `{f}`."),
            Self::Merchant => "The notification is for another merchant.".into(),
            Self::UnknownOrder => "The notification names no order of ours.".into(),
            Self::Amount { sent, expected } => format!(
                "The notification's amount_gross {sent:?} is not the order's {}.",
                payfast::amount(*expected)
            ),
            // Why (PayFast's answer, or a connection error) is logged, not sent.
            Self::Unconfirmed(_) => "PayFast did not confirm the notification.".into(),
            Self::AlreadyPaid => "The order was already paid with another payment.".into(),
        }
    }
}

/// The fields of a notification that matter, once verified.
struct Verified {
    order: OrderRow,
    pf_payment_id: String,
    status: String,
    token: Option<String>,
}

fn field<'a>(fields: &'a [(String, String)], name: &'static str) -> Result<&'a str, Refusal> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::Missing(name))
}

/// A value from the wire as an audit detail: at most 64 characters, no controls.
fn short(value: Option<&str>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, |v| {
        v.chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect::<String>()
            .into()
    })
}

/// Handles one notification from `client` with form `body`.
pub async fn handle(
    state: &AppState,
    meta: &RequestMeta,
    client: IpAddr,
    body: &[u8],
) -> Result<ItnResult, AppError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let outcome = match verify(state, client, &fields).await {
        Ok(Ok(v)) => apply(state, meta, v).await,
        Ok(Err(e)) => return Err(e),
        Err(r) => Err(r),
    };
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(e),
        Err(refusal) => {
            refuse(state, meta, &fields, &refusal).await?;
            Err(AppError::BadRequest(refusal.detail()))
        }
    }
}

async fn refuse(
    state: &AppState,
    meta: &RequestMeta,
    fields: &[(String, String)],
    refusal: &Refusal,
) -> Result<(), AppError> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let cause = match refusal {
        Refusal::Unconfirmed(why) => why.as_str(),
        _ => "",
    };
    tracing::warn!(reason = refusal.code(), cause, client = %meta.ip,
        m_payment_id = ?short(get("m_payment_id")), pf_payment_id = ?short(get("pf_payment_id")),
        "a PayFast notification was refused");
    let details = serde_json::json!({
        "provider": "payfast",
        "reason": refusal.code(),
        "m_payment_id": short(get("m_payment_id")),
        "pf_payment_id": short(get("pf_payment_id")),
        "payment_status": short(get("payment_status")),
    });
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        meta,
        Event {
            actor: None,
            action: "payment_notification_refused",
            target: None,
            outcome: Outcome::Failure,
            details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn verify(
    state: &AppState,
    client: IpAddr,
    fields: &[(String, String)],
) -> Result<Result<Verified, AppError>, Refusal> {
    let Some(pf) = state.config.domain::<BillingSettings>().payfast.as_ref() else {
        return Err(Refusal::Off);
    };
    let ip = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    if !pf.valid_sources.iter().any(|n| n.contains(&ip)) {
        return Err(Refusal::Source(ip));
    }
    let passphrase = pf.passphrase.as_ref().map(|p| p.expose());
    if !payfast::notification_signed(fields, passphrase) {
        return Err(Refusal::Signature);
    }
    if field(fields, "merchant_id")? != pf.merchant_id {
        return Err(Refusal::Merchant);
    }
    let order_id = field(fields, "m_payment_id")?;
    let pf_payment_id = field(fields, "pf_payment_id")?;
    let status = field(fields, "payment_status")?;
    let gross = field(fields, "amount_gross")?;
    if uuid::Uuid::try_parse(order_id).is_err() || pf_payment_id.chars().count() > 64 {
        return Err(Refusal::UnknownOrder);
    }
    let order = match store::order_by_id(state.db.pool(), order_id).await {
        Ok(Some(o)) if o.provider == "payfast" => o,
        Ok(_) => return Err(Refusal::UnknownOrder),
        Err(e) => return Ok(Err(e.into())),
    };
    let amount_ok =
        payfast::parse_amount(gross).is_some_and(|c| (c - order.amount_cents).abs() <= 1);
    if !amount_ok {
        return Err(Refusal::Amount {
            sent: gross.chars().take(20).collect(),
            expected: order.amount_cents,
        });
    }
    let client = state.get::<PayFastClient>();
    if let Err(e) = client.confirm(&payfast::param_string(fields)).await {
        return Err(Refusal::Unconfirmed(e.to_string()));
    }
    Ok(Ok(Verified {
        pf_payment_id: pf_payment_id.to_owned(),
        status: status.to_owned(),
        token: fields
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone())
            .filter(|t| !t.is_empty()),
        order,
    }))
}

/// Applies a verified notification once.
async fn apply(
    state: &AppState,
    meta: &RequestMeta,
    v: Verified,
) -> Result<Result<ItnResult, AppError>, Refusal> {
    let result = match v.status.as_str() {
        "COMPLETE" => pay(state, meta, &v).await,
        "CANCELLED" if v.order.kind == "subscription" => cancel(state, meta, &v).await,
        _ => return Ok(Ok(ItnResult::Ignored)),
    };
    match result {
        Ok(r) => Ok(Ok(r)),
        Err(Failure::Refused(r)) => Err(r),
        Err(Failure::App(e)) => Ok(Err(e)),
    }
}

enum Failure {
    Refused(Refusal),
    App(AppError),
}

impl<E: Into<AppError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::App(e.into())
    }
}

async fn pay(state: &AppState, meta: &RequestMeta, v: &Verified) -> Result<ItnResult, Failure> {
    let now = now_micros();
    let mut tx = state.db.begin().await?;
    let claimed = store::claim_notification(
        &mut tx,
        "payfast",
        &v.pf_payment_id,
        "COMPLETE",
        &v.order.id,
        now,
    )
    .await?;
    if !claimed {
        tx.rollback().await?;
        return Ok(ItnResult::Duplicate);
    }
    let order = store::order_by_id(&mut *tx, &v.order.id)
        .await?
        .ok_or(Failure::Refused(Refusal::UnknownOrder))?;
    if order.kind == "credits" && order.status == "paid" {
        tx.rollback().await?;
        return Err(Failure::Refused(Refusal::AlreadyPaid));
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
        provider: "payfast".into(),
        provider_payment_id: v.pf_payment_id.clone(),
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
        extend(&mut tx, &order, v.token.clone(), now).await?;
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
        "provider": "payfast", "invoice": invoice.number, "amount_cents": invoice.amount_cents,
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
    tracing::info!(order_id = %order.id, invoice = %invoice.number,
        amount_cents = invoice.amount_cents, "a PayFast payment was applied");
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
    token: Option<String>,
    now: i64,
) -> Result<(), AppError> {
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
        provider: Some("payfast".into()),
        provider_token: token.or_else(|| current.and_then(|c| c.provider_token)),
    };
    store::save_subscription(conn, &row, now).await?;
    Ok(())
}

/// PayFast ended a subscription: it runs to the end of the paid period, then is free.
async fn cancel(state: &AppState, meta: &RequestMeta, v: &Verified) -> Result<ItnResult, Failure> {
    let now = now_micros();
    let mut tx = state.db.begin().await?;
    let claimed = store::claim_notification(
        &mut tx,
        "payfast",
        &v.pf_payment_id,
        "CANCELLED",
        &v.order.id,
        now,
    )
    .await?;
    if !claimed {
        tx.rollback().await?;
        return Ok(ItnResult::Duplicate);
    }
    let Some(current) = store::subscription(&mut *tx, &v.order.user_id)
        .await?
        .filter(|s| s.plan == v.order.product && s.status != "canceled")
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
        ..Event::own(&v.order.user_id, "subscription_canceled")
    }
    .with(serde_json::json!({"provider": "payfast", "order_id": v.order.id}));
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    Ok(ItnResult::Applied)
}
