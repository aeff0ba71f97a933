//! The billing rules: the catalogue, subscriptions, checkout (amounts only from the catalogue,
//! idempotent per `Idempotency-Key`), invoices and credits. Notifications are in `itn.rs`.

use crate::{
    db::types::{from_micros, new_id},
    domains::users::{Role, User},
    error::AppError,
    http::pagination::{Page, Pagination},
    state::AppState,
};

use super::{
    ledger, payfast,
    payfast_api::PayFastApi,
    settings::{BillingSettings, PayFastSettings},
    store::{self, OrderRow, SubscriptionRow},
    stripe::{NewSession, StripeClient},
    types::*,
};

fn settings(state: &AppState) -> &BillingSettings {
    state.config.domain::<BillingSettings>()
}

/// Every plan of the catalogue.
pub async fn plans(state: &AppState) -> Result<Vec<PlanView>, AppError> {
    store::plans(state.db.pool())
        .await?
        .into_iter()
        .map(|p| {
            Ok(PlanView {
                code: PlanCode::parse(&p.code).ok_or_else(|| {
                    anyhow::anyhow!("unknown plan code {} in billing_plans", p.code)
                })?,
                name: p.name,
                currency: Currency::Zar,
                monthly_cents: p.monthly_cents,
                yearly_cents: p.yearly_cents,
                limits: serde_json::from_str(&p.limits).map_err(anyhow::Error::from)?,
                features: serde_json::from_str(&p.features).map_err(anyhow::Error::from)?,
            })
        })
        .collect()
}

/// Every credit pack of the catalogue.
pub async fn packs(state: &AppState) -> Result<Vec<CreditPackView>, AppError> {
    store::packs(state.db.pool())
        .await?
        .into_iter()
        .map(|p| {
            let code = match p.code.as_str() {
                "small" => PackCode::Small,
                "medium" => PackCode::Medium,
                "large" => PackCode::Large,
                other => return Err(anyhow::anyhow!("unknown pack code {other}").into()),
            };
            Ok(CreditPackView {
                code,
                name: p.name,
                currency: Currency::Zar,
                price_cents: p.price_cents,
                credit_cents: p.credit_cents,
            })
        })
        .collect()
}

/// The subscription as it stands at `now` (µs): an account without a row is on free; a paid
/// period that ended is free again when it was set to end, else past due for `grace` (µs,
/// `BILLING_GRACE_DAYS`), then free.
pub fn subscription_view(row: Option<&SubscriptionRow>, now: i64, grace: i64) -> SubscriptionView {
    let free = SubscriptionView {
        plan: PlanCode::Free,
        cycle: None,
        status: SubscriptionStatus::Active,
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        provider: None,
    };
    let Some(row) = row else { return free };
    let plan = PlanCode::parse(&row.plan).unwrap_or(PlanCode::Free);
    let ended = row.current_period_end.is_none_or(|end| end <= now);
    let grace_over = row
        .current_period_end
        .is_none_or(|end| end.saturating_add(grace) <= now);
    if plan == PlanCode::Free || (ended && (row.cancel_at_period_end || grace_over)) {
        return free;
    }
    let status = if ended {
        SubscriptionStatus::PastDue
    } else {
        SubscriptionStatus::parse(&row.status).unwrap_or(SubscriptionStatus::Active)
    };
    SubscriptionView {
        plan,
        cycle: row.cycle.as_deref().and_then(Cycle::parse),
        status,
        current_period_start: row.current_period_start.map(from_micros),
        current_period_end: row.current_period_end.map(from_micros),
        cancel_at_period_end: row.cancel_at_period_end,
        provider: row.provider.as_deref().and_then(Provider::parse),
    }
}

/// `BILLING_GRACE_DAYS` in microseconds.
pub(super) fn grace(state: &AppState) -> i64 {
    i64::from(settings(state).grace_days) * 86_400 * 1_000_000
}

/// The caller's subscription.
pub async fn subscription(state: &AppState, user: &str) -> Result<SubscriptionView, AppError> {
    let row = store::subscription(state.db.pool(), user).await?;
    Ok(subscription_view(
        row.as_ref(),
        state.clock.now_micros(),
        grace(state),
    ))
}

/// What a change of the cancel flag asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndChange {
    /// Back to free at the end of the paid period (`{"plan":"free"}`): nothing to do on free.
    SwitchToFree,
    /// Cancel at the end of the paid period.
    Cancel,
    /// Undo a cancel before the period ends.
    Resume,
}

/// Sets or clears cancel-at-period-end on a paid subscription that is running, at its provider
/// first: PayFast's subscription is cancelled through its API (it cannot be resumed after
/// that), Stripe's gets `cancel_at_period_end`. A provider that fails or cannot be reached is a
/// 503 and nothing changes here. Cancelling what already ends is answered as it stands.
pub async fn change_end(
    state: &AppState,
    user: &str,
    change: EndChange,
) -> Result<SubscriptionView, AppError> {
    let now = state.clock.now_micros();
    // Read without a transaction: none is held open while the provider answers.
    let row = store::subscription(state.db.pool(), user).await?;
    let view = subscription_view(row.as_ref(), now, grace(state));
    let row = match row {
        _ if change == EndChange::SwitchToFree && view.plan == PlanCode::Free => return Ok(view),
        Some(row) if view.plan != PlanCode::Free => row,
        _ => return Err(not_running()),
    };
    let ending = change != EndChange::Resume;
    if ending && row.cancel_at_period_end && view.status != SubscriptionStatus::PastDue {
        return Ok(view);
    }
    if view.status != SubscriptionStatus::Active {
        return Err(
            if change == EndChange::Resume && view.status == SubscriptionStatus::Canceled {
                AppError::Conflict(
                    "The provider ended this subscription; buy the plan again to resume it.".into(),
                )
            } else {
                not_running()
            },
        );
    }
    if row.cancel_at_period_end == ending {
        return Ok(view);
    }
    let ended_at_payfast = tell_provider(state, &row, ending).await?;
    let mut tx = state.db.begin().await?;
    // Taken, then read again: a payment may have extended the period while the provider
    // answered. Another subscription (a new token) is not the one the provider was told about.
    store::lock_subscription(&mut tx, user, now).await?;
    let fresh = store::subscription(&mut *tx, user)
        .await?
        .filter(|f| f.provider_token == row.provider_token)
        .ok_or_else(|| {
            AppError::Conflict("The subscription changed meanwhile; look at it again.".into())
        })?;
    let updated = SubscriptionRow {
        cancel_at_period_end: ending,
        status: if ended_at_payfast {
            "canceled".into()
        } else {
            fresh.status.clone()
        },
        ..fresh
    };
    if ended_at_payfast {
        // Kept with the order, as for PayFast's own cancellation: a payment of it delivered
        // after this still ends canceled.
        if let Some(order) = &updated.order_id {
            store::mark_order_canceled(&mut tx, order, now).await?;
        }
    }
    store::save_subscription(&mut tx, &updated, now).await?;
    tx.commit().await?;
    Ok(subscription_view(Some(&updated), now, grace(state)))
}

fn not_running() -> AppError {
    AppError::Conflict("There is no running paid subscription to change.".into())
}

/// Tells the subscription's provider to stop (or resume) billing it; `true` when PayFast ended
/// it for good. A subscription without a provider token (made before tokens were kept) changes
/// here only.
async fn tell_provider(
    state: &AppState,
    row: &SubscriptionRow,
    ending: bool,
) -> Result<bool, AppError> {
    let Some(token) = row.provider_token.as_deref() else {
        return Ok(false);
    };
    let off = |name: &str| {
        AppError::NotConfigured(format!(
            "{name} is not configured on this server, so the subscription cannot be changed there."
        ))
    };
    match row.provider.as_deref() {
        Some("payfast") => {
            let api = state
                .provided
                .get::<PayFastApi>()
                .ok_or_else(|| off("PayFast"))?;
            api.cancel_subscription(token).await.map_err(|e| {
                AppError::Unavailable(format!("PayFast did not cancel the subscription: {e}"))
            })?;
            Ok(true)
        }
        Some("stripe") => {
            let api = state
                .provided
                .get::<StripeClient>()
                .ok_or_else(|| off("Stripe"))?;
            api.set_cancel_at_period_end(token, ending)
                .await
                .map_err(|e| {
                    AppError::Unavailable(format!("Stripe did not change the subscription: {e}"))
                })?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// After a full refund ended a plan here: asks its provider to stop billing it. The refund is
/// made by then, so a failure is logged for an operator, not answered.
pub(super) async fn stop_provider_billing(state: &AppState, ended: &SubscriptionRow) {
    if ended.cancel_at_period_end && ended.status == "canceled" {
        return;
    }
    if let Err(e) = tell_provider(state, ended, true).await {
        tracing::warn!(user_id = %ended.user_id, error = %e,
            "a refunded subscription is still billed by its provider: cancel it there by hand");
    }
}

/// The order a checkout request makes, priced from the catalogue.
async fn price(state: &AppState, user: &str, req: &CheckoutRequest) -> Result<OrderRow, AppError> {
    let pool = state.db.pool();
    let (kind, product, cycle, amount, credit, description) = match *req {
        CheckoutRequest::Subscription { plan, cycle, .. } => {
            let p = store::plan_by_code(pool, plan.code().as_str())
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("plan {} missing from the catalogue", plan.code().as_str())
                })?;
            let amount = match cycle {
                Cycle::Monthly => p.monthly_cents,
                Cycle::Yearly => p.yearly_cents,
            };
            let words = format!("CapeControl {} ({})", p.name, cycle.as_str());
            (
                "subscription",
                p.code,
                Some(cycle.as_str().to_owned()),
                amount,
                0,
                words,
            )
        }
        CheckoutRequest::Credits { pack, .. } => {
            let p = store::pack_by_code(pool, pack.as_str())
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("pack {} missing from the catalogue", pack.as_str())
                })?;
            (
                "credits",
                p.code,
                None,
                p.price_cents,
                p.credit_cents,
                p.name,
            )
        }
    };
    Ok(OrderRow {
        id: new_id(),
        user_id: user.to_owned(),
        kind: kind.to_owned(),
        product,
        cycle,
        provider: req.provider().as_str().to_owned(),
        amount_cents: amount,
        credit_cents: credit,
        description,
        status: "pending".into(),
        idempotency_key: None,
        redirect_url: None,
        provider_token: None,
        created_at: state.clock.now_micros(),
        canceled_at: None,
    })
}

/// Whether `order` is what `req` asks for (a retry with the same idempotency key).
fn same_request(order: &OrderRow, req: &CheckoutRequest) -> bool {
    let (kind, product, cycle) = match *req {
        CheckoutRequest::Subscription { plan, cycle, .. } => {
            ("subscription", plan.code().as_str(), Some(cycle.as_str()))
        }
        CheckoutRequest::Credits { pack, .. } => ("credits", pack.as_str(), None),
    };
    order.kind == kind
        && order.product == product
        && order.cycle.as_deref() == cycle
        && order.provider == req.provider().as_str()
}

/// PayFast's settings, or a 503 saying it is off.
fn payfast_on(state: &AppState) -> Result<&PayFastSettings, AppError> {
    settings(state).payfast.as_ref().ok_or_else(|| {
        AppError::NotConfigured(
            "PayFast is not configured on this server (PAYFAST_MERCHANT_ID and \
             PAYFAST_MERCHANT_KEY are unset)."
                .into(),
        )
    })
}

/// Checks that `req`'s provider can take it, before anything is stored.
fn provider_ready(state: &AppState, req: &CheckoutRequest) -> Result<(), AppError> {
    match req.provider() {
        Provider::Payfast => {
            let pf = payfast_on(state)?;
            if matches!(req, CheckoutRequest::Subscription { .. }) && pf.passphrase.is_none() {
                return Err(AppError::NotConfigured(
                    "PayFast subscriptions need a passphrase, and PAYFAST_PASSPHRASE is unset."
                        .into(),
                ));
            }
            Ok(())
        }
        Provider::Stripe if settings(state).stripe.is_none() => Err(AppError::NotConfigured(
            "Stripe is not configured on this server (STRIPE_SECRET_KEY and \
             STRIPE_WEBHOOK_SECRET are unset)."
                .into(),
        )),
        Provider::Stripe => Ok(()),
    }
}

/// Makes an order for `req` (or finds the one made with the same `key`) and says how to pay it.
pub async fn checkout(
    state: &AppState,
    user: &User,
    req: &CheckoutRequest,
    key: Option<&str>,
) -> Result<CheckoutResponse, AppError> {
    provider_ready(state, req)?;
    if let Some(key) = key {
        if let Some(order) = store::order_by_key(state.db.pool(), &user.id, key).await? {
            return replay(state, user, &order, req).await;
        }
    }
    let order = OrderRow {
        idempotency_key: key.map(str::to_owned),
        ..price(state, &user.id, req).await?
    };
    if !store::insert_order(state.db.pool(), &order).await? {
        // Another request with the same key made its order first.
        let key = key.unwrap_or_default();
        let first = store::order_by_key(state.db.pool(), &user.id, key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("an order conflicted on its key but is not there"))?;
        return replay(state, user, &first, req).await;
    }
    tracing::info!(order_id = %order.id, kind = %order.kind, product = %order.product,
        amount_cents = order.amount_cents, "checkout order made");
    respond(state, user, &order).await
}

async fn replay(
    state: &AppState,
    user: &User,
    order: &OrderRow,
    req: &CheckoutRequest,
) -> Result<CheckoutResponse, AppError> {
    if !same_request(order, req) {
        return Err(AppError::Conflict(
            "This Idempotency-Key was already used for a different checkout.".into(),
        ));
    }
    respond(state, user, order).await
}

async fn respond(
    state: &AppState,
    user: &User,
    order: &OrderRow,
) -> Result<CheckoutResponse, AppError> {
    if order.provider == "stripe" {
        return stripe_checkout(state, user, order).await;
    }
    let pf = payfast_on(state)?;
    Ok(CheckoutResponse {
        order_id: order.id.clone(),
        provider: Provider::Payfast,
        amount_cents: order.amount_cents,
        currency: Currency::Zar,
        redirect: Redirect {
            method: RedirectMethod::Post,
            url: pf.process_url.clone(),
            fields: Some(payfast_fields(state, pf, user, order)),
        },
    })
}

/// Stripe's hosted page for `order`: made once through the API (the order id is the
/// idempotency key, so concurrent retries get the same session) and kept with the order.
async fn stripe_checkout(
    state: &AppState,
    user: &User,
    order: &OrderRow,
) -> Result<CheckoutResponse, AppError> {
    let url = match &order.redirect_url {
        Some(url) => url.clone(),
        None => {
            let base = state.config.public_base_url.as_str().trim_end_matches('/');
            let cycle = order.cycle.as_deref().and_then(Cycle::parse);
            let session = NewSession {
                order_id: &order.id,
                mode: if cycle.is_some() {
                    "subscription"
                } else {
                    "payment"
                },
                amount_cents: order.amount_cents,
                description: &order.description,
                interval: cycle.map(|c| match c {
                    Cycle::Monthly => "month",
                    Cycle::Yearly => "year",
                }),
                email: &user.email,
                success_url: format!("{base}/billing/success?order={}", order.id),
                cancel_url: format!("{base}/billing/cancel?order={}", order.id),
            };
            let made = state
                .get::<StripeClient>()
                .create_session(&session)
                .await
                .map_err(|e| {
                    AppError::Unavailable(format!("Stripe made no checkout session: {e}"))
                })?;
            store::set_redirect(state.db.pool(), &order.id, &made.url).await?;
            made.url
        }
    };
    Ok(CheckoutResponse {
        order_id: order.id.clone(),
        provider: Provider::Stripe,
        amount_cents: order.amount_cents,
        currency: Currency::Zar,
        redirect: Redirect {
            method: RedirectMethod::Get,
            url,
            fields: None,
        },
    })
}

/// The signed PayFast form for `order`, fields in PayFast's documented order.
pub fn payfast_fields(
    state: &AppState,
    pf: &PayFastSettings,
    user: &User,
    order: &OrderRow,
) -> Fields {
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    let amount = payfast::amount(order.amount_cents);
    let mut fields: Vec<(&'static str, String)> = vec![
        ("merchant_id", pf.merchant_id.clone()),
        ("merchant_key", pf.merchant_key.expose().to_owned()),
        (
            "return_url",
            format!("{base}/billing/success?order={}", order.id),
        ),
        (
            "cancel_url",
            format!("{base}/billing/cancel?order={}", order.id),
        ),
        ("notify_url", format!("{base}/api/payments/payfast/itn")),
        ("name_first", user.first_name.clone()),
        ("name_last", user.last_name.clone()),
        ("email_address", user.email.clone()),
        ("m_payment_id", order.id.clone()),
        ("amount", amount.clone()),
        ("item_name", order.description.clone()),
    ];
    if order.kind == "subscription" {
        let cycle = order.cycle.as_deref().and_then(Cycle::parse);
        fields.extend([
            ("subscription_type", "1".to_owned()),
            (
                "billing_date",
                from_micros(order.created_at).format("%Y-%m-%d").to_string(),
            ),
            ("recurring_amount", amount),
            (
                "frequency",
                if cycle == Some(Cycle::Yearly) {
                    "6"
                } else {
                    "3"
                }
                .to_owned(),
            ),
            ("cycles", "0".to_owned()),
        ]);
    }
    fields.retain(|(_, v)| !v.trim().is_empty());
    let passphrase = pf.passphrase.as_ref().map(|p| p.expose());
    let signature = payfast::checkout_signature(&fields, passphrase);
    fields.push(("signature", signature));
    Fields(fields)
}

/// `POST /api/payments/payfast/checkout`: the production client's subscription checkout.
pub async fn compat_checkout(
    state: &AppState,
    user: &User,
    code: ProductCode,
) -> Result<CompatCheckoutResponse, AppError> {
    let answer = checkout(state, user, &code.checkout(), None).await?;
    Ok(CompatCheckoutResponse {
        process_url: answer.redirect.url,
        fields: answer.redirect.fields.unwrap_or_default(),
    })
}

/// An invoice as its owner sees it.
pub(super) fn invoice_view(row: store::InvoiceRow) -> Result<InvoiceView, AppError> {
    Ok(InvoiceView {
        status: InvoiceStatus::parse(&row.status)
            .ok_or_else(|| anyhow::anyhow!("unknown invoice status {}", row.status))?,
        provider: Provider::parse(&row.provider)
            .ok_or_else(|| anyhow::anyhow!("unknown provider {}", row.provider))?,
        lines: vec![InvoiceLine {
            description: row.description,
            amount_cents: row.amount_cents,
        }],
        id: row.id,
        number: row.number,
        amount_cents: row.amount_cents,
        refunded_cents: row.refunded_cents,
        currency: Currency::Zar,
        provider_payment_id: row.provider_payment_id,
        created_at: from_micros(row.created_at),
        paid_at: row.paid_at.map(from_micros),
    })
}

/// One page of the caller's invoices, newest first.
pub async fn invoices(
    state: &AppState,
    user: &str,
    page: &Pagination,
) -> Result<Page<InvoiceView>, AppError> {
    let (rows, total) = store::invoices(state.db.pool(), user, page.limit(), page.offset()).await?;
    let items = rows
        .into_iter()
        .map(invoice_view)
        .collect::<Result<_, _>>()?;
    Ok(page.wrap(items, total))
}

/// One invoice, for its owner or an admin; anyone else gets the same 404 as for none.
pub async fn invoice(state: &AppState, me: &User, id: &str) -> Result<InvoiceView, AppError> {
    let row = store::invoice_by_id(state.db.pool(), id)
        .await?
        .filter(|i| i.user_id == me.id || me.role == Role::Admin)
        .ok_or_else(|| AppError::NotFound("No such invoice.".into()))?;
    invoice_view(row)
}

/// The caller's credit balance and latest movements, from the ledger.
pub async fn credits(state: &AppState, user: &str) -> Result<CreditsView, AppError> {
    let pool = state.db.pool();
    let balance_cents = ledger::credit_balance(pool, user).await?;
    let transactions = ledger::credit_movements(pool, user, 100)
        .await?
        .into_iter()
        .map(|m| CreditMovement {
            id: m.id,
            kind: m.kind,
            description: m.description,
            amount_cents: m.amount_cents,
            created_at: from_micros(m.created_at),
        })
        .collect();
    Ok(CreditsView {
        balance_cents,
        currency: Currency::Zar,
        transactions,
    })
}

/// Counts the ledger's transactions and those that do not balance.
pub async fn ledger_check(state: &AppState) -> Result<LedgerCheck, AppError> {
    let (transactions, unbalanced) = ledger::check(state.db.pool()).await?;
    if unbalanced > 0 {
        tracing::error!(
            unbalanced,
            "the ledger has transactions that do not balance"
        );
    }
    Ok(LedgerCheck {
        transactions,
        unbalanced,
    })
}
