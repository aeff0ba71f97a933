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

use crate::{
    domains::audit::{self, Event, Outcome, RequestMeta},
    error::AppError,
    state::AppState,
};

use super::{
    paid::{self, Failure, Payment},
    payfast::{self, PayFastClient},
    settings::BillingSettings,
    store::{self, OrderRow},
    types::ItnResult,
};

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
    Token,
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
            Self::Token => "token_mismatch",
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
            Self::Token => {
                "The notification's subscription token is not the one the order was paid with."
                    .into()
            }
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
    let payment = Payment {
        provider: "payfast",
        payment_id: v.pf_payment_id.clone(),
        order_id: v.order.id.clone(),
        token: v.token.clone(),
        reference: None,
    };
    let result = match v.status.as_str() {
        "COMPLETE" => paid::pay(state, meta, &payment).await,
        "CANCELLED" if v.order.kind == "subscription" => paid::cancel(state, meta, &payment).await,
        _ => return Ok(Ok(ItnResult::Ignored)),
    };
    match result {
        Ok(r) => Ok(Ok(r)),
        Err(Failure::AlreadyPaid) => Err(Refusal::AlreadyPaid),
        Err(Failure::UnknownOrder) => Err(Refusal::UnknownOrder),
        Err(Failure::TokenMismatch) => Err(Refusal::Token),
        Err(Failure::App(e)) => Ok(Err(e)),
    }
}
