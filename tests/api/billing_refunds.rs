//! Refunds and cancels through the providers' APIs, against one local fake that speaks PayFast's
//! API (checking its signature, headers and `?testing=true` as PayFast does), Stripe's API
//! (checking the secret key and the refund's `Idempotency-Key`) and PayFast's validation
//! endpoint, and records every call.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use md5::{Digest, Md5};
use reqwest::Method as ReqMethod;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    auth_helpers::*,
    billing::{
        count, itn, itn_result, ledger_check, post_itn, subscription, MERCHANT_ID, MERCHANT_KEY,
        PASSPHRASE,
    },
    billing_stripe::{deliver, now, result, signature, SECRET_KEY, WEBHOOK_SECRET},
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_full_payfast_refund_goes_through_its_signed_api_and_ends_the_plan_at_once,
    a_partial_payfast_refund_of_a_credit_pack_takes_back_its_credits_in_proportion,
    a_stripe_refund_goes_through_the_payment_intent_with_our_refund_id_as_idempotency_key,
    a_stripe_subscription_invoice_is_refunded_through_the_payment_intent_that_paid_it,
    bad_refund_requests_are_refused_and_change_nothing,
    a_credit_pack_is_not_refunded_beyond_the_credits_left_unspent,
    two_refunds_of_one_invoice_at_once_never_refund_more_than_was_paid,
    a_refund_the_provider_fails_answers_503_and_changes_nothing,
    only_admins_may_refund,
    a_refund_retried_with_the_same_idempotency_key_is_made_once,
    a_charge_refunded_in_stripes_dashboard_is_applied_once_in_any_order,
    our_refund_and_its_charge_refunded_echo_have_one_effect,
    a_user_cancel_cancels_the_payfast_subscription_through_its_api,
    cancel_and_resume_set_cancel_at_period_end_on_the_stripe_subscription,
);

/// One call the fake received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    /// Form fields (Stripe) or JSON body fields as text (PayFast).
    fields: Vec<(String, String)>,
    idempotency_key: Option<String>,
    /// Whether it was authenticated as the real provider requires.
    signed: bool,
}

impl Call {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The fake providers: PayFast's API and validation endpoint, and Stripe's API.
#[derive(Clone, Default)]
struct Fake {
    base: String,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Every provider call fails (PayFast: `status: failed`; Stripe: a 500).
    fail: Arc<AtomicBool>,
    /// Milliseconds each refund or cancel takes.
    delay_ms: Arc<AtomicU64>,
    /// Where to deliver the `charge.refunded` echo of a Stripe refund before answering it.
    echo_to: Arc<Mutex<Option<String>>>,
    /// What each echo delivery was answered.
    echoes: Arc<Mutex<Vec<String>>>,
    /// Stripe: refunded so far per payment intent, and the refund per idempotency key.
    refunded: Arc<Mutex<HashMap<String, i64>>>,
    by_key: Arc<Mutex<HashMap<String, Value>>>,
}

impl Fake {
    async fn start() -> Self {
        let mut fake = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        fake
    }

    /// The provider calls made so far (not the notification confirmations).
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn calls_to(&self, method: &str, prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.starts_with(prefix))
            .collect()
    }
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// PayFast's API signature, recomputed here: every header and body field and the passphrase,
/// sorted by key, `key=urlencode(value)` joined by `&`, MD5.
fn payfast_api_signature(fields: &[(String, String)]) -> String {
    let mut all = fields.to_vec();
    all.push(("passphrase".into(), PASSPHRASE.into()));
    all.sort();
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &all {
        s.append_pair(k, v);
    }
    md5_hex(&s.finish())
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn handle(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    if path == "/eng/query/validate" {
        return "VALID".into_response();
    }
    let mut call = Call {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_owned(),
        fields: Vec::new(),
        idempotency_key: headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned()),
        signed: false,
    };
    if path.starts_with("/v1/") {
        call.fields = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        call.signed = header(&headers, "authorization") == format!("Bearer {SECRET_KEY}");
        fake.calls.lock().unwrap().push(call.clone());
        return stripe(&fake, &call).await;
    }
    let json: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    if let Some(map) = json.as_object() {
        for (k, v) in map {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            call.fields.push((k.clone(), text));
        }
    }
    let mut signed: Vec<(String, String)> = ["merchant-id", "version", "timestamp"]
        .iter()
        .map(|h| (h.to_string(), header(&headers, h)))
        .collect();
    signed.extend(call.fields.iter().cloned());
    call.signed = header(&headers, "signature") == payfast_api_signature(&signed)
        && header(&headers, "merchant-id") == MERCHANT_ID
        && header(&headers, "version") == "v1"
        && chrono::DateTime::parse_from_str(&header(&headers, "timestamp"), "%Y-%m-%dT%H:%M:%S%z")
            .is_ok()
        && call.query == "testing=true";
    fake.calls.lock().unwrap().push(call.clone());
    if !call.signed {
        let answer =
            json!({"code": 401, "status": "failed", "data": {"message": "Signature mismatch"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(answer)).into_response();
    }
    tokio::time::sleep(std::time::Duration::from_millis(
        fake.delay_ms.load(Ordering::SeqCst),
    ))
    .await;
    if fake.fail.load(Ordering::SeqCst) {
        let answer = json!({"code": 400, "status": "failed", "data": {"message": "Refund failed"}});
        return axum::Json(answer).into_response();
    }
    axum::Json(json!({"code": 200, "status": "success", "data": {"response": true}}))
        .into_response()
}

async fn stripe(fake: &Fake, call: &Call) -> Response {
    if !call.signed {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let path = call.path.as_str();
    if path == "/v1/checkout/sessions" {
        let id = format!(
            "cs_test_{}",
            call.idempotency_key
                .clone()
                .unwrap_or_default()
                .replace('-', "")
        );
        return axum::Json(json!({"id": id, "url": format!("https://checkout.stripe.test/{id}")}))
            .into_response();
    }
    if let Some(invoice) = path.strip_prefix("/v1/invoices/") {
        return axum::Json(json!({"id": invoice, "object": "invoice", "payment_intent": format!("pi_of_{invoice}")}))
            .into_response();
    }
    tokio::time::sleep(std::time::Duration::from_millis(
        fake.delay_ms.load(Ordering::SeqCst),
    ))
    .await;
    if fake.fail.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"type": "api_error"}})),
        )
            .into_response();
    }
    if let Some(id) = path.strip_prefix("/v1/subscriptions/") {
        let cancel = call.field("cancel_at_period_end") == Some("true");
        return axum::Json(
            json!({"id": id, "object": "subscription", "cancel_at_period_end": cancel}),
        )
        .into_response();
    }
    assert_eq!(path, "/v1/refunds", "an unexpected Stripe call");
    let key = call
        .idempotency_key
        .clone()
        .expect("a refund has an Idempotency-Key");
    if let Some(same) = fake.by_key.lock().unwrap().get(&key) {
        return axum::Json(same.clone()).into_response();
    }
    let pi = call
        .field("payment_intent")
        .expect("payment_intent")
        .to_owned();
    let amount: i64 = call.field("amount").unwrap().parse().unwrap();
    let total = {
        let mut refunded = fake.refunded.lock().unwrap();
        let total = refunded.entry(pi.clone()).or_default();
        *total += amount;
        *total
    };
    let id = format!("re_{}", key.replace('-', ""));
    let echo = fake.echo_to.lock().unwrap().clone();
    if let Some(url) = echo {
        let event = charge_refunded(&format!("evt_{id}"), &pi, total, Some(&id));
        let answer = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature(&event, now(), WEBHOOK_SECRET))
            .body(event)
            .send()
            .await
            .unwrap();
        let body: Value = answer.json().await.unwrap();
        fake.echoes
            .lock()
            .unwrap()
            .push(body["result"].as_str().unwrap_or("?").to_owned());
    }
    let refund = json!({"id": id, "object": "refund", "status": "succeeded", "amount": amount, "payment_intent": pi});
    fake.by_key.lock().unwrap().insert(key, refund.clone());
    axum::Json(refund).into_response()
}

/// A `charge.refunded` event for the charge of `pi`, refunded `total` so far.
fn charge_refunded(event: &str, pi: &str, total: i64, refund: Option<&str>) -> String {
    let refunds: Vec<Value> = refund.map(|r| json!({"id": r})).into_iter().collect();
    json!({
        "id": event, "type": "charge.refunded",
        "data": {"object": {
            "id": format!("ch_of_{pi}"), "object": "charge", "payment_intent": pi,
            "amount_refunded": total, "currency": "zar", "refunded": true,
            "refunds": {"data": refunds},
        }},
    })
    .to_string()
}

async fn spawn(backend: Backend, fake: &Fake) -> TestApp {
    let validate = format!("{}/eng/query/validate", fake.base);
    let app = TestApp::spawn_with(
        backend,
        &[
            ("PAYFAST_MERCHANT_ID", MERCHANT_ID),
            ("PAYFAST_MERCHANT_KEY", MERCHANT_KEY),
            ("PAYFAST_PASSPHRASE", PASSPHRASE),
            ("PAYFAST_VALIDATE_URL", validate.as_str()),
            ("PAYFAST_API_URL", fake.base.as_str()),
            ("PAYFAST_VALID_SOURCES", "127.0.0.1/32"),
            ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_API_BASE", fake.base.as_str()),
            ("PUBLIC_BASE_URL", "https://capecontrol.example"),
            ("DATABASE_MAX_CONNECTIONS", "8"),
        ],
    )
    .await;
    *fake.echo_to.lock().unwrap() = None;
    app
}

async fn checkout(app: &TestApp, token: &str, body: Value) -> String {
    let res = post_authed(app, "/api/billing/checkout", token, &body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn invoice_of(app: &TestApp, order_id: &str) -> String {
    sqlx::query("SELECT id FROM billing_invoices WHERE order_id = $1")
        .bind(order_id.to_owned())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("id")
}

fn payfast(kind: &str, what: &str) -> Value {
    match kind {
        "credits" => json!({"kind": "credits", "pack": what, "provider": "payfast"}),
        _ => {
            json!({"kind": "subscription", "plan": what, "cycle": "monthly", "provider": "payfast"})
        }
    }
}

/// Pays `body` through PayFast (a believed ITN) and answers the invoice id.
async fn paid_payfast(
    app: &TestApp,
    token: &str,
    body: Value,
    pf_id: &str,
    amount: &str,
) -> String {
    let order_id = checkout(app, token, body).await;
    let res = post_itn(app, itn(&order_id, pf_id, amount, "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    invoice_of(app, &order_id).await
}

/// Pays `body` through Stripe: a payment-mode session paid by `pi`, or a subscription-mode one
/// whose first invoice is `in_…`.
async fn paid_stripe(
    app: &TestApp,
    token: &str,
    body: Value,
    amount: i64,
    reference: &str,
) -> String {
    let order_id = checkout(app, token, body).await;
    let (pi, invoice) = if reference.starts_with("in_") {
        (Value::Null, json!(reference))
    } else {
        (json!(reference), Value::Null)
    };
    let event = json!({
        "id": format!("evt_paid_{reference}"), "type": "checkout.session.completed",
        "data": {"object": {
            "id": format!("cs_{reference}"), "object": "checkout.session",
            "client_reference_id": order_id, "metadata": {"order_id": order_id},
            "amount_total": amount, "currency": "zar", "payment_status": "paid",
            "payment_intent": pi, "invoice": invoice,
            "subscription": if invoice.is_null() { Value::Null } else { json!("sub_test_1") },
        }},
    })
    .to_string();
    let res = deliver(app, &event, &signature(&event, now(), WEBHOOK_SECRET)).await;
    assert_eq!(result(res).await, "applied");
    invoice_of(app, &order_id).await
}

fn refund_path(invoice: &str) -> String {
    format!("/api/admin/invoices/{invoice}/refund")
}

async fn refund(app: &TestApp, invoice: &str, body: Value) -> reqwest::Response {
    let admin = app.admin_token().await;
    post_authed(app, &refund_path(invoice), &admin, &body).await
}

async fn refunded(app: &TestApp, invoice: &str, body: Value) -> Value {
    let res = refund(app, invoice, body).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn invoice(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/api/billing/invoices/{id}")).await
}

async fn balance(app: &TestApp, token: &str) -> i64 {
    get_json(app, "/api/billing/credits", token).await["balance_cents"]
        .as_i64()
        .unwrap()
}

async fn entries_sum(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM ledger_entries",
    )
    .await
}

async fn a_full_payfast_refund_goes_through_its_signed_api_and_ends_the_plan_at_once(
    backend: Backend,
) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "1124464", "529.00").await;
    assert_eq!(subscription(&app, &s.access).await["plan"], "pro");
    let made = refunded(&app, &id, json!({"reason": "Charged twice"})).await;
    assert_eq!(made["amount_cents"], 52900);
    assert_eq!(made["provider_refund_id"], Value::Null);
    assert_eq!(made["invoice"]["status"], "refunded");
    assert_eq!(made["invoice"]["refunded_cents"], 52900);
    // PayFast was asked once, signed as its API checks, in the sandbox (`?testing=true`).
    let calls = fake.calls_to("POST", "/refunds/");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert!(call.signed, "{call:?}");
    assert_eq!(call.path, "/refunds/1124464");
    assert_eq!(call.field("amount"), Some("52900"));
    assert_eq!(call.field("reason"), Some("Charged twice"));
    // The plan ends at once, and PayFast stops billing it.
    let sub = subscription(&app, &s.access).await;
    assert_eq!(
        (sub["plan"].as_str(), sub["status"].as_str()),
        (Some("free"), Some("active"))
    );
    let cancels = fake.calls_to("PUT", "/subscriptions/");
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0].path,
        "/subscriptions/dc0521d3-55fe-269b-fa00-b647310d760f/cancel"
    );
    assert!(cancels[0].signed);
    assert_eq!(invoice(&app, &id).await["status"], "refunded");
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 2, "unbalanced": 0})
    );
    assert_eq!(entries_sum(&app).await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'invoice_refunded'"
        )
        .await,
        1
    );
    let mail = outbox(&app, "billing_refund", &s.email).await;
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0]["text"].as_str().unwrap().contains("R529.00"),
        "{mail:?}"
    );
    // Nothing is left to refund.
    assert_problem(refund(&app, &id, json!({"reason": "Again"})).await, 409).await;
    assert_eq!(fake.calls_to("POST", "/refunds/").len(), 1);
}

async fn a_partial_payfast_refund_of_a_credit_pack_takes_back_its_credits_in_proportion(
    backend: Backend,
) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(
        &app,
        &s.access,
        payfast("credits", "medium"),
        "2001",
        "500.00",
    )
    .await;
    assert_eq!(balance(&app, &s.access).await, 52500);
    // Half a cent is not an amount (422, nothing refunded); 10000.0 is 10000, as JSON Schema's
    // `integer` reads it (schemathesis sent one, and it was refused).
    assert_problem(
        refund(
            &app,
            &id,
            json!({"amount_cents": 10000.5, "reason": "Unused"}),
        )
        .await,
        422,
    )
    .await;
    let made = refunded(
        &app,
        &id,
        json!({"amount_cents": 10000.0, "reason": "Unused"}),
    )
    .await;
    assert_eq!(made["invoice"]["status"], "partially_refunded");
    assert_eq!(made["invoice"]["refunded_cents"], 10000);
    // R100 of R500 takes back a fifth of the 52500 credit (bonus included).
    assert_eq!(balance(&app, &s.access).await, 42000);
    assert_eq!(subscription(&app, &s.access).await["plan"], "free");
    // The rest, without an amount: everything left.
    let rest = refunded(&app, &id, json!({"reason": "Unused"})).await;
    assert_eq!(rest["amount_cents"], 40000);
    assert_eq!(rest["invoice"]["status"], "refunded");
    assert_eq!(balance(&app, &s.access).await, 0);
    let amounts: Vec<_> = fake
        .calls_to("POST", "/refunds/2001")
        .iter()
        .map(|c| c.field("amount").unwrap().to_owned())
        .collect();
    assert_eq!(amounts, ["10000", "40000"]);
    assert!(fake.calls_to("PUT", "/subscriptions/").is_empty());
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 3, "unbalanced": 0})
    );
    assert_eq!(entries_sum(&app).await, 0);
    let credits = get_json(&app, "/api/billing/credits", &s.access).await;
    assert_eq!(credits["transactions"][0]["kind"], "refund");
    // The credit it took back: the rest of the 52500.
    assert_eq!(credits["transactions"][0]["amount_cents"], -42000);
}

async fn a_stripe_refund_goes_through_the_payment_intent_with_our_refund_id_as_idempotency_key(
    backend: Backend,
) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let credits = json!({"kind": "credits", "pack": "small", "provider": "stripe"});
    let id = paid_stripe(&app, &s.access, credits, 10000, "pi_test_1").await;
    let made = refunded(
        &app,
        &id,
        json!({"amount_cents": 2500, "reason": "Partly unused"}),
    )
    .await;
    let calls = fake.calls_to("POST", "/v1/refunds");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.signed);
    assert_eq!(call.field("payment_intent"), Some("pi_test_1"));
    assert_eq!(call.field("amount"), Some("2500"));
    assert_eq!(call.field("metadata[invoice_id]"), Some(id.as_str()));
    assert_eq!(call.field("metadata[reason]"), Some("Partly unused"));
    assert_eq!(call.idempotency_key.as_deref(), made["id"].as_str());
    assert_eq!(call.field("metadata[refund_id]"), made["id"].as_str());
    assert!(made["provider_refund_id"]
        .as_str()
        .unwrap()
        .starts_with("re_"));
    assert_eq!(made["invoice"]["status"], "partially_refunded");
    assert_eq!(balance(&app, &s.access).await, 7500);
    let rest = refunded(&app, &id, json!({"reason": "All unused"})).await;
    assert_eq!(rest["amount_cents"], 7500);
    assert_eq!(invoice(&app, &id).await["status"], "refunded");
    assert_eq!(balance(&app, &s.access).await, 0);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 3, "unbalanced": 0})
    );
}

async fn a_stripe_subscription_invoice_is_refunded_through_the_payment_intent_that_paid_it(
    backend: Backend,
) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let plan =
        json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "stripe"});
    let id = paid_stripe(&app, &s.access, plan, 52900, "in_test_1").await;
    refunded(&app, &id, json!({"reason": "Did not want it"})).await;
    assert_eq!(fake.calls_to("GET", "/v1/invoices/in_test_1").len(), 1);
    let calls = fake.calls_to("POST", "/v1/refunds");
    assert_eq!(calls[0].field("payment_intent"), Some("pi_of_in_test_1"));
    assert_eq!(calls[0].field("amount"), Some("52900"));
    assert_eq!(subscription(&app, &s.access).await["plan"], "free");
    // Stripe stops billing the subscription.
    let subs = fake.calls_to("POST", "/v1/subscriptions/sub_test_1");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].field("cancel_at_period_end"), Some("true"));
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 2, "unbalanced": 0})
    );
}

async fn bad_refund_requests_are_refused_and_change_nothing(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "3001", "529.00").await;
    for bad in [
        json!({"amount_cents": 0, "reason": "x"}),
        json!({"amount_cents": -1, "reason": "x"}),
        json!({"amount_cents": 52901, "reason": "x"}),
        json!({"amount_cents": 100, "reason": "  "}),
        json!({"amount_cents": 100, "reason": "two\nlines"}),
        json!({"amount_cents": 100}),
        json!({"amount_cents": 100, "reason": "x", "currency": "ZAR"}),
        json!({"amount_cents": "100", "reason": "x"}),
    ] {
        let body = assert_problem(refund(&app, &id, bad.clone()).await, 422).await;
        assert!(body["errors"].is_array(), "{bad}: {body}");
    }
    let none = uuid::Uuid::now_v7().to_string();
    assert_problem(refund(&app, &none, json!({"reason": "x"})).await, 404).await;
    assert_problem(refund(&app, "not-an-id", json!({"reason": "x"})).await, 404).await;
    assert!(fake.calls_to("POST", "/refunds/").is_empty());
    let inv = invoice(&app, &id).await;
    assert_eq!(
        (inv["status"].as_str(), inv["refunded_cents"].as_i64()),
        (Some("paid"), Some(0))
    );
    assert_eq!(subscription(&app, &s.access).await["plan"], "pro");
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 1, "unbalanced": 0})
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM billing_refunds").await, 0);
}

async fn a_credit_pack_is_not_refunded_beyond_the_credits_left_unspent(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(
        &app,
        &s.access,
        payfast("credits", "small"),
        "4001",
        "100.00",
    )
    .await;
    // The customer spends 3000 of the 10000 credit (a balanced ledger transaction).
    let tx = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO ledger_transactions (id, kind, description, reference, created_at) VALUES ($1, 'credit_spend', 'agent runs', 'test', 1)")
        .bind(tx.clone())
        .execute(app.state.db.pool())
        .await
        .unwrap();
    for (account, user, amount) in [
        ("customer_credits", Some(s.user_id.clone()), 3000_i64),
        ("platform_revenue", None, -3000),
    ] {
        sqlx::query("INSERT INTO ledger_entries (id, transaction_id, account, user_id, amount_cents, currency) VALUES ($1, $2, $3, $4, $5, 'ZAR')")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tx.clone())
            .bind(account)
            .bind(user)
            .bind(amount)
            .execute(app.state.db.pool())
            .await
            .unwrap();
    }
    assert_eq!(balance(&app, &s.access).await, 7000);
    let body = assert_problem(refund(&app, &id, json!({"reason": "Unused"})).await, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("7000"), "{body}");
    assert!(fake.calls_to("POST", "/refunds/").is_empty());
    // What is unspent can be refunded.
    refunded(&app, &id, json!({"amount_cents": 7000, "reason": "Unused"})).await;
    assert_eq!(balance(&app, &s.access).await, 0);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 3, "unbalanced": 0})
    );
}

async fn two_refunds_of_one_invoice_at_once_never_refund_more_than_was_paid(backend: Backend) {
    let fake = Fake::start().await;
    fake.delay_ms.store(300, Ordering::SeqCst);
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "5001", "529.00").await;
    app.admin_token().await;
    let full = json!({"reason": "Twice at once"});
    let (a, b) = tokio::join!(refund(&app, &id, full.clone()), refund(&app, &id, full));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(fake.calls_to("POST", "/refunds/").len(), 1);
    // Two partial refunds that together exceed the payment: one is made, one refused.
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "5002", "529.00").await;
    let part = json!({"amount_cents": 30000, "reason": "Part"});
    let (a, b) = tokio::join!(refund(&app, &id, part.clone()), refund(&app, &id, part));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 422]);
    assert_eq!(invoice(&app, &id).await["refunded_cents"], 30000);
    let asked: i64 = fake
        .calls_to("POST", "/refunds/")
        .iter()
        .map(|c| c.field("amount").unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(asked, 52900 + 30000);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 4, "unbalanced": 0})
    );
}

async fn a_refund_the_provider_fails_answers_503_and_changes_nothing(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let pf = paid_payfast(
        &app,
        &s.access,
        payfast("credits", "small"),
        "6001",
        "100.00",
    )
    .await;
    let credits = json!({"kind": "credits", "pack": "small", "provider": "stripe"});
    let st = paid_stripe(&app, &s.access, credits, 10000, "pi_fail_1").await;
    fake.fail.store(true, Ordering::SeqCst);
    for id in [&pf, &st] {
        assert_problem(refund(&app, id, json!({"reason": "Unused"})).await, 503).await;
        let inv = invoice(&app, id).await;
        assert_eq!(
            (inv["status"].as_str(), inv["refunded_cents"].as_i64()),
            (Some("paid"), Some(0))
        );
    }
    assert_eq!(balance(&app, &s.access).await, 20000);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 2, "unbalanced": 0})
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM billing_refunds WHERE status = 'failed'"
        )
        .await,
        2
    );
    let failed = "SELECT COUNT(*) FROM audit_events \
                  WHERE action = 'invoice_refund_failed' AND outcome = 'failure'";
    assert_eq!(count(&app, failed).await, 2);
    assert_eq!(
        count(
            &app,
            "SELECT CAST(SUM(refund_reserved_cents) AS BIGINT) FROM billing_invoices"
        )
        .await,
        0
    );
    // Once the provider answers again, the whole amount can be refunded.
    fake.fail.store(false, Ordering::SeqCst);
    for id in [&pf, &st] {
        assert_eq!(
            refunded(&app, id, json!({"reason": "Unused"})).await["amount_cents"],
            10000
        );
    }
    assert_eq!(balance(&app, &s.access).await, 0);
}

async fn only_admins_may_refund(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "7001", "529.00").await;
    let body = json!({"reason": "Mine"});
    assert_problem(
        post_authed(&app, &refund_path(&id), &s.access, &body).await,
        403,
    )
    .await;
    assert_problem(app.post_json(&refund_path(&id), &body).await, 401).await;
    assert!(fake.calls_to("POST", "/refunds/").is_empty());
    assert_eq!(invoice(&app, &id).await["status"], "paid");
}

async fn deliver_refunded(app: &TestApp, event: &str, pi: &str, total: i64) -> String {
    let body = charge_refunded(event, pi, total, None);
    result(deliver(app, &body, &signature(&body, now(), WEBHOOK_SECRET)).await).await
}

async fn a_charge_refunded_in_stripes_dashboard_is_applied_once_in_any_order(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let credits = json!({"kind": "credits", "pack": "small", "provider": "stripe"});
    let id = paid_stripe(&app, &s.access, credits, 10000, "pi_dash_1").await;
    assert_eq!(
        deliver_refunded(&app, "evt_r1", "pi_dash_1", 4000).await,
        "applied"
    );
    assert_eq!(
        deliver_refunded(&app, "evt_r1", "pi_dash_1", 4000).await,
        "duplicate"
    );
    assert_eq!(balance(&app, &s.access).await, 6000);
    // A second refund (running total 7000) arrives before a late copy of the first.
    assert_eq!(
        deliver_refunded(&app, "evt_r2", "pi_dash_1", 7000).await,
        "applied"
    );
    assert_eq!(
        deliver_refunded(&app, "evt_r1b", "pi_dash_1", 4000).await,
        "duplicate"
    );
    let inv = invoice(&app, &id).await;
    assert_eq!(
        (inv["status"].as_str(), inv["refunded_cents"].as_i64()),
        (Some("partially_refunded"), Some(7000))
    );
    assert_eq!(balance(&app, &s.access).await, 3000);
    assert_eq!(
        deliver_refunded(&app, "evt_x", "pi_not_ours", 100).await,
        "ignored"
    );
    assert!(fake.calls_to("POST", "/v1/refunds").is_empty());
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 3, "unbalanced": 0})
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'invoice_refunded'"
        )
        .await,
        2
    );
}

async fn our_refund_and_its_charge_refunded_echo_have_one_effect(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let credits = json!({"kind": "credits", "pack": "small", "provider": "stripe"});
    let id = paid_stripe(&app, &s.access, credits, 10000, "pi_echo_1").await;
    // Stripe delivers the echo while our refund call is still waiting for its answer.
    *fake.echo_to.lock().unwrap() = Some(app.url("/api/payments/stripe/webhook"));
    refunded(&app, &id, json!({"amount_cents": 4000, "reason": "Echoed"})).await;
    assert_eq!(*fake.echoes.lock().unwrap(), ["duplicate"]);
    // And again after it was recorded.
    assert_eq!(
        deliver_refunded(&app, "evt_late", "pi_echo_1", 4000).await,
        "duplicate"
    );
    let inv = invoice(&app, &id).await;
    assert_eq!(inv["refunded_cents"], 4000);
    assert_eq!(balance(&app, &s.access).await, 6000);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM billing_refunds").await, 1);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 2, "unbalanced": 0})
    );
}

async fn a_user_cancel_cancels_the_payfast_subscription_through_its_api(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    paid_payfast(&app, &s.access, payfast("plan", "pro"), "8001", "529.00").await;
    let cancel = || {
        authed(
            &app,
            ReqMethod::POST,
            "/api/billing/subscription/cancel",
            &s.access,
        )
        .send()
    };
    // PayFast failing: 503, and nothing changes.
    fake.fail.store(true, Ordering::SeqCst);
    assert_problem(cancel().await.unwrap(), 503).await;
    assert_eq!(
        subscription(&app, &s.access).await["cancel_at_period_end"],
        false
    );
    fake.fail.store(false, Ordering::SeqCst);
    let res = cancel().await.unwrap();
    assert_eq!(res.status(), 200);
    let sub: Value = res.json().await.unwrap();
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["cancel_at_period_end"], true);
    let calls = fake.calls_to("PUT", "/subscriptions/");
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|c| c.signed && c.fields.is_empty()),
        "{calls:?}"
    );
    assert_eq!(
        calls[1].path,
        "/subscriptions/dc0521d3-55fe-269b-fa00-b647310d760f/cancel"
    );
    // Cancelled at PayFast: no resume; cancelling again asks PayFast nothing.
    let resume = authed(
        &app,
        ReqMethod::POST,
        "/api/billing/subscription/resume",
        &s.access,
    );
    assert_problem(resume.send().await.unwrap(), 409).await;
    assert_eq!(cancel().await.unwrap().status(), 200);
    assert_eq!(fake.calls_to("PUT", "/subscriptions/").len(), 2);
}

async fn cancel_and_resume_set_cancel_at_period_end_on_the_stripe_subscription(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let plan =
        json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "stripe"});
    paid_stripe(&app, &s.access, plan, 52900, "in_test_9").await;
    let post = |path: &'static str| authed(&app, ReqMethod::POST, path, &s.access).send();
    let canceled: Value = post("/api/billing/subscription/cancel")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(canceled["cancel_at_period_end"], true);
    let resumed: Value = post("/api/billing/subscription/resume")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["cancel_at_period_end"], false);
    let to_free = post_authed(
        &app,
        "/api/billing/subscription",
        &s.access,
        &json!({"plan": "free"}),
    )
    .await;
    assert_eq!(
        to_free.json::<Value>().await.unwrap()["cancel_at_period_end"],
        true
    );
    let flags: Vec<_> = fake
        .calls_to("POST", "/v1/subscriptions/sub_test_1")
        .iter()
        .map(|c| c.field("cancel_at_period_end").unwrap().to_owned())
        .collect();
    assert_eq!(flags, ["true", "false", "true"]);
    // Stripe failing: 503, and nothing changes.
    post("/api/billing/subscription/resume").await.unwrap();
    fake.fail.store(true, Ordering::SeqCst);
    assert_problem(post("/api/billing/subscription/cancel").await.unwrap(), 503).await;
    assert_eq!(
        subscription(&app, &s.access).await["cancel_at_period_end"],
        false
    );
}

async fn keyed(app: &TestApp, invoice: &str, key: &str, body: Value) -> reqwest::Response {
    let admin = app.admin_token().await;
    authed(app, ReqMethod::POST, &refund_path(invoice), &admin)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn a_refund_retried_with_the_same_idempotency_key_is_made_once(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn(backend, &fake).await;
    let s = register_customer(&app).await;
    let id = paid_payfast(&app, &s.access, payfast("plan", "pro"), "7501", "529.00").await;
    let body = json!({"amount_cents": 1000, "reason": "Goodwill"});
    let first = keyed(&app, &id, "k-1", body.clone()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = keyed(&app, &id, "k-1", body.clone()).await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(fake.calls_to("POST", "/refunds/").len(), 1);
    assert_eq!(invoice(&app, &id).await["refunded_cents"], 1000);
    // The same key for another refund is a conflict; a bad key is refused.
    let other = json!({"amount_cents": 2000, "reason": "Goodwill"});
    assert_problem(keyed(&app, &id, "k-1", other).await, 409).await;
    assert_problem(keyed(&app, &id, "bad key", body.clone()).await, 422).await;
    // A key whose refund the provider did not make can be retried, and asks again.
    fake.fail.store(true, Ordering::SeqCst);
    assert_problem(keyed(&app, &id, "k-2", body.clone()).await, 503).await;
    fake.fail.store(false, Ordering::SeqCst);
    assert_eq!(keyed(&app, &id, "k-2", body).await.status(), 201);
    assert_eq!(fake.calls_to("POST", "/refunds/").len(), 3);
    assert_eq!(invoice(&app, &id).await["refunded_cents"], 2000);
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 3, "unbalanced": 0})
    );
}
