//! Billing handlers: catalogue, subscription, checkout, invoices, credits, the ledger check,
//! and PayFast's checkout (production client) and notification routes.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::{
        audit::RequestMeta,
        auth::extract::{AdminUser, AuthUser},
    },
    error::{problem_response, AppError, Problem},
    http::{
        client::ClientAddr,
        json::AppJson,
        pagination::{Page, Pagination},
        query::AppQuery,
        validate::known_id,
    },
    state::AppState,
};

use super::{
    itn, quota, refund,
    service::{self, EndChange},
    types::*,
    webhook,
};

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(plans))
        .routes(routes!(credit_packs))
        .routes(routes!(get_subscription, change_plan))
        .routes(routes!(cancel))
        .routes(routes!(resume))
        .routes(routes!(checkout))
        .routes(routes!(invoices))
        .routes(routes!(invoice))
        .routes(routes!(credits))
        .routes(routes!(usage))
        .routes(routes!(ledger_check))
        .routes(routes!(refund_invoice))
        .routes(routes!(payfast_checkout))
        .routes(routes!(payfast_itn))
        .routes(routes!(stripe_webhook))
}

/// The plans, with prices in cents and monthly limits.
#[utoipa::path(get, path = "/api/billing/plans", tag = "billing", responses(
    (status = 200, description = "Every plan, cheapest first", body = Vec<PlanView>)))]
async fn plans(State(state): State<AppState>) -> Result<AppJson<Vec<PlanView>>, AppError> {
    Ok(AppJson(service::plans(&state).await?))
}

/// The credit packs for pay-per-run agents.
#[utoipa::path(get, path = "/api/billing/credit-packs", tag = "billing", responses(
    (status = 200, description = "Every credit pack, smallest first", body = Vec<CreditPackView>)))]
async fn credit_packs(
    State(state): State<AppState>,
) -> Result<AppJson<Vec<CreditPackView>>, AppError> {
    Ok(AppJson(service::packs(&state).await?))
}

/// The caller's subscription; an account that never paid is on `free`, `active`.
#[utoipa::path(get, path = "/api/billing/subscription", tag = "billing", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The subscription", body = SubscriptionView)))]
async fn get_subscription(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<SubscriptionView>, AppError> {
    Ok(AppJson(service::subscription(&state, &me.user.id).await?))
}

/// Switches to `free` at the end of the paid period (paid plans are bought through a checkout).
#[utoipa::path(post, path = "/api/billing/subscription", tag = "billing", security(("bearerAuth" = [])), request_body = ChangePlan, responses(
    (status = 200, description = "The subscription, set to end with its paid period (unchanged on free)", body = SubscriptionView),
    (status = 409, description = "The subscription is not running (past due, or ended by the provider)", body = Problem, content_type = "application/problem+json")))]
async fn change_plan(
    State(state): State<AppState>,
    me: AuthUser,
    AppJson(_req): AppJson<ChangePlan>,
) -> Result<AppJson<SubscriptionView>, AppError> {
    let view = service::change_end(&state, &me.user.id, EndChange::SwitchToFree).await?;
    Ok(AppJson(view))
}

/// Cancels at the end of the paid period.
#[utoipa::path(post, path = "/api/billing/subscription/cancel", tag = "billing", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The subscription, set to end with its paid period", body = SubscriptionView),
    (status = 409, description = "No running paid subscription", body = Problem, content_type = "application/problem+json")))]
async fn cancel(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<SubscriptionView>, AppError> {
    let view = service::change_end(&state, &me.user.id, EndChange::Cancel).await?;
    Ok(AppJson(view))
}

/// Undoes a cancel before the paid period ends.
#[utoipa::path(post, path = "/api/billing/subscription/resume", tag = "billing", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The subscription, renewing again", body = SubscriptionView),
    (status = 409, description = "No running paid subscription, or one the provider ended", body = Problem, content_type = "application/problem+json")))]
async fn resume(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<SubscriptionView>, AppError> {
    let view = service::change_end(&state, &me.user.id, EndChange::Resume).await?;
    Ok(AppJson(view))
}

/// The `Idempotency-Key` header of a checkout (its documentation; [`idempotency_key`] reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// A key of the client's choosing: a retry with the same key (and the same body) answers the
    /// same order. 1 to 255 visible ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// The `Idempotency-Key` header of a refund (its documentation; [`idempotency_key`] reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct RefundIdempotencyHeader {
    /// A key of the admin's choosing, per invoice: a retry with the same key (and the same body)
    /// answers the same refund instead of refunding again. 1 to 255 visible ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let ok =
        |v: &str| (1..=255).contains(&v.len()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    match value.to_str() {
        Ok(v) if ok(v) => Ok(Some(v.to_owned())),
        _ => Err(AppError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// Makes an order from the catalogue and answers how to pay it (PayFast: a signed form to post).
#[utoipa::path(post, path = "/api/billing/checkout", tag = "billing", security(("bearerAuth" = [])), params(IdempotencyHeader), request_body = CheckoutRequest, responses(
    (status = 201, description = "The order and how to pay it (the same order again for a retried Idempotency-Key)", body = CheckoutResponse),
    (status = 409, description = "The Idempotency-Key was used for a different checkout", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "The provider is not configured on this server (the detail says which)", body = Problem, content_type = "application/problem+json")))]
async fn checkout(
    State(state): State<AppState>,
    me: AuthUser,
    headers: HeaderMap,
    AppJson(req): AppJson<CheckoutRequest>,
) -> Result<(StatusCode, AppJson<CheckoutResponse>), AppError> {
    let key = idempotency_key(&headers)?;
    let answer = service::checkout(&state, &me.user, &req, key.as_deref()).await?;
    Ok((StatusCode::CREATED, AppJson(answer)))
}

/// The caller's invoices, newest first.
#[utoipa::path(get, path = "/api/billing/invoices", tag = "billing", security(("bearerAuth" = [])), params(Pagination), responses(
    (status = 200, description = "One page of invoices", body = Page<InvoiceView>)))]
async fn invoices(
    State(state): State<AppState>,
    me: AuthUser,
    AppQuery(page): AppQuery<Pagination>,
) -> Result<AppJson<Page<InvoiceView>>, AppError> {
    Ok(AppJson(
        service::invoices(&state, &me.user.id, &page).await?,
    ))
}

const NO_INVOICE: &str = "No such invoice.";

/// One invoice, for its owner or an admin.
#[utoipa::path(get, path = "/api/billing/invoices/{id}", tag = "billing", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Invoice id")), responses(
    (status = 200, description = "The invoice", body = InvoiceView),
    (status = 404, description = "No such invoice, or another user's", body = Problem, content_type = "application/problem+json")))]
async fn invoice(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<AppJson<InvoiceView>, AppError> {
    known_id(&id, NO_INVOICE)?;
    Ok(AppJson(service::invoice(&state, &me.user, &id).await?))
}

/// The caller's credit balance and latest movements, read from the ledger.
#[utoipa::path(get, path = "/api/billing/credits", tag = "billing", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Balance and movements", body = CreditsView)))]
async fn credits(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<CreditsView>, AppError> {
    Ok(AppJson(service::credits(&state, &me.user.id).await?))
}

/// What the caller used this month of each limit of their plan, and when the counters reset.
#[utoipa::path(get, path = "/api/billing/usage", tag = "billing", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Each counter's use, limit and reset (the first of next month, 00:00 in Johannesburg)", body = UsageView)))]
async fn usage(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<UsageView>, AppError> {
    Ok(AppJson(quota::usage(&state, &me.user.id).await?))
}

/// Checks that every ledger transaction sums to zero.
#[utoipa::path(get, path = "/api/admin/ledger/check", tag = "admin", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Transactions counted, and those that do not balance", body = LedgerCheck)))]
async fn ledger_check(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<AppJson<LedgerCheck>, AppError> {
    Ok(AppJson(service::ledger_check(&state).await?))
}

/// Refunds (part of) a paid invoice through its provider's API and reverses its effect: the
/// credits of a pack are taken back, a plan fully refunded ends at once.
#[utoipa::path(post, path = "/api/admin/invoices/{id}/refund", tag = "admin", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Invoice id"), RefundIdempotencyHeader), request_body = RefundRequest, responses(
    (status = 201, description = "Refunded at the provider; the refund and the invoice after it (the same refund again for a retried Idempotency-Key)", body = RefundView),
    (status = 404, description = "No such invoice", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Nothing is left to refund, the customer already spent the pack's credits, the invoice has no payment reference to refund through, or the Idempotency-Key was used for another refund (or its refund is still being made)", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "The provider is not configured, failed or could not be reached; nothing changed", body = Problem, content_type = "application/problem+json")))]
async fn refund_invoice(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    headers: HeaderMap,
    AppJson(req): AppJson<RefundRequest>,
) -> Result<(StatusCode, AppJson<RefundView>), AppError> {
    known_id(&id, NO_INVOICE)?;
    let key = idempotency_key(&headers)?;
    let made = refund::refund(&state, &meta, &admin.0.user, &id, &req, key.as_deref()).await?;
    Ok((StatusCode::CREATED, AppJson(made)))
}

/// The production client's PayFast subscription checkout: the signed form and where to post it.
#[utoipa::path(post, path = "/api/payments/payfast/checkout", tag = "billing", security(("bearerAuth" = [])), request_body = CompatCheckoutRequest, responses(
    (status = 201, description = "PayFast's process URL and the signed fields", body = CompatCheckoutResponse),
    (status = 503, description = "PayFast is not configured on this server", body = Problem, content_type = "application/problem+json")))]
async fn payfast_checkout(
    State(state): State<AppState>,
    me: AuthUser,
    AppJson(req): AppJson<CompatCheckoutRequest>,
) -> Result<(StatusCode, AppJson<CompatCheckoutResponse>), AppError> {
    let answer = service::compat_checkout(&state, &me.user, req.product_code).await?;
    Ok((StatusCode::CREATED, AppJson(answer)))
}

/// A PayFast notification as posted: every field a string; the ones read are listed.
struct ItnForm;

impl utoipa::PartialSchema for ItnForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let text = |d: &str| serde_json::json!({ "type": "string", "description": d });
        serde_json::from_value(serde_json::json!({
            "type": "object",
            "description": "PayFast's notification fields, signed in the order posted",
            "properties": {
                "m_payment_id": text("Our order id"),
                "pf_payment_id": text("PayFast's payment id"),
                "payment_status": text("COMPLETE, CANCELLED, ..."),
                "amount_gross": text("The amount paid, e.g. 529.00"),
                "merchant_id": text("The merchant paid"),
                "token": text("The subscription token (subscriptions)"),
                "signature": text("MD5 of the other fields as posted and the passphrase"),
            },
            "additionalProperties": { "type": "string" },
        }))
        .expect("the notification schema is a valid schema")
    }
}

impl utoipa::ToSchema for ItnForm {}

const FORM: &str = "application/x-www-form-urlencoded";

/// PayFast's Instant Transaction Notification: verified four ways, then applied once.
#[utoipa::path(post, path = "/api/payments/payfast/itn", tag = "billing",
    request_body(content = ItnForm, content_type = "application/x-www-form-urlencoded"), responses(
    (status = 200, description = "Verified: applied now, already applied before, or of no effect", body = ItnAnswer),
    (status = 400, description = "Refused (source, signature, merchant, order, amount or PayFast's confirmation); nothing changed", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "The body is not `application/x-www-form-urlencoded`", body = Problem, content_type = "application/problem+json")))]
async fn payfast_itn(
    State(state): State<AppState>,
    meta: RequestMeta,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_guess::mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == FORM);
    if !form {
        return Ok(problem_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "This endpoint accepts only `Content-Type: application/x-www-form-urlencoded`.",
            None,
        ));
    }
    let result = itn::handle(&state, &meta, client, &body).await?;
    Ok(AppJson(ItnAnswer { result }).into_response())
}

/// A Stripe event as delivered (its fields are checked after the signature).
struct StripeEvent;

impl utoipa::PartialSchema for StripeEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "object",
            "description": "A Stripe event (`id`, `type`, `data.object`), signed by `Stripe-Signature`",
        }))
        .expect("the event schema is a valid schema")
    }
}

impl utoipa::ToSchema for StripeEvent {}

/// The `Stripe-Signature` header (its documentation; the handler reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct StripeSignature {
    /// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (several `v1` may be given).
    #[param(rename = "Stripe-Signature")]
    pub stripe_signature: Option<String>,
}

/// Stripe's webhook: the signature is checked over the raw body, then the event is applied once.
#[utoipa::path(post, path = "/api/payments/stripe/webhook", tag = "billing", params(StripeSignature),
    request_body(content = StripeEvent, content_type = "application/json"), responses(
    (status = 200, description = "Verified: applied now, already applied before, or of no effect", body = ItnAnswer),
    (status = 400, description = "Refused (signature, age, order, amount); nothing changed", body = Problem, content_type = "application/problem+json")))]
async fn stripe_webhook(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_guess::mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json");
    if !json {
        return Err(AppError::UnsupportedMediaType);
    }
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let result = webhook::handle(&state, &meta, signature, &body).await?;
    Ok(AppJson(ItnAnswer { result }).into_response())
}
