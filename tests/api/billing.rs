//! Billing: catalogue, subscriptions, PayFast checkout and notifications (against a local fake
//! of PayFast's validation endpoint), invoices, credits and the ledger.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use chrono::Datelike;
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    the_catalogue_lists_the_plans_and_credit_packs_priced_in_cents,
    a_new_account_is_on_free_and_active,
    a_payfast_checkout_answers_a_form_signed_over_catalogue_prices,
    a_checkout_retried_with_the_same_idempotency_key_answers_the_same_order,
    a_provider_without_its_settings_answers_503_saying_so,
    the_compat_checkout_answers_payfasts_form_for_a_product_code,
    a_complete_itn_pays_the_order_once_with_invoice_ledger_and_receipt,
    every_refused_itn_is_a_400_that_changes_nothing_and_is_audited,
    an_itn_is_believed_only_from_payfasts_networks_resolved_through_trusted_proxies,
    an_itn_is_refused_while_payfast_cannot_be_asked_to_confirm_it,
    ten_identical_itns_at_once_have_exactly_one_effect,
    a_renewal_itn_extends_the_period_and_makes_a_new_invoice,
    a_cancelled_itn_ends_the_subscription_with_its_paid_period,
    a_credit_pack_payment_adds_credits_read_from_a_balanced_ledger,
    invoice_numbers_stay_sequential_without_gaps_under_concurrent_payments,
    another_users_invoice_is_404_and_an_admin_sees_it,
    cancel_resume_and_switching_to_free_change_only_a_running_paid_plan,
    the_ledger_check_is_for_admins_only,
    an_unpaid_period_is_past_due_for_the_grace_days_then_free,
    two_paid_periods_of_one_plan_at_once_extend_it_twice,
    a_cancel_at_the_same_time_as_a_renewal_keeps_the_renewed_period,
    a_period_anchored_on_the_31st_ends_on_the_last_day_of_a_shorter_month_and_returns_to_the_31st,
    a_cancellation_delivered_before_its_payment_still_ends_the_subscription,
    periods_and_invoice_years_follow_the_calendar_in_johannesburg,
    ten_identical_itns_split_over_two_instances_have_exactly_one_effect,
    a_renewal_delivered_after_its_cancellation_extends_the_paid_period_and_stays_canceled,
);

pub(crate) const MERCHANT_ID: &str = "10000100";
pub(crate) const MERCHANT_KEY: &str = "46f0cd694581a";
pub(crate) const PASSPHRASE: &str = "jt7NOE43FZPn";
const FORM: &str = "application/x-www-form-urlencoded";

/// A local stand-in for PayFast's validation endpoint (answers `answer`, counts calls) and its
/// API's subscription cancel (answers success; `tests/api/billing_refunds.rs` checks signatures).
#[derive(Clone)]
pub(crate) struct FakePayFast {
    url: String,
    api: String,
    answer: Arc<Mutex<&'static str>>,
    calls: Arc<AtomicUsize>,
}

impl FakePayFast {
    async fn start() -> Self {
        let answer = Arc::new(Mutex::new("VALID"));
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, c) = (answer.clone(), calls.clone());
        let router = axum::Router::new()
            .route(
                "/eng/query/validate",
                axum::routing::post(move |body: String| {
                    let (a, c) = (a.clone(), c.clone());
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        // PayFast is posted the notification's own parameter string.
                        assert!(body.contains("pf_payment_id="), "{body}");
                        let answer: &'static str = *a.lock().unwrap();
                        answer
                    }
                }),
            )
            .route(
                "/subscriptions/{token}/cancel",
                axum::routing::put(|| async {
                    axum::Json(
                        json!({"code": 200, "status": "success", "data": {"response": true}}),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            url: format!("http://{addr}/eng/query/validate"),
            api: format!("http://{addr}"),
            answer,
            calls,
        }
    }

    fn answer(&self, text: &'static str) {
        *self.answer.lock().unwrap() = text;
    }
}

pub(crate) async fn spawn_with_payfast(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (TestApp, FakePayFast) {
    let fake = FakePayFast::start().await;
    let mut vars = vec![
        ("PAYFAST_MERCHANT_ID", MERCHANT_ID),
        ("PAYFAST_MERCHANT_KEY", MERCHANT_KEY),
        ("PAYFAST_PASSPHRASE", PASSPHRASE),
        ("PAYFAST_VALIDATE_URL", fake.url.as_str()),
        ("PAYFAST_API_URL", fake.api.as_str()),
        ("PAYFAST_VALID_SOURCES", "127.0.0.1/32"),
        ("PUBLIC_BASE_URL", "https://capecontrol.example"),
    ];
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(backend, &vars).await, fake)
}

pub(crate) async fn checkout(
    app: &TestApp,
    token: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = authed(app, Method::POST, "/api/billing/checkout", token).json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

pub(crate) fn pro_monthly() -> Value {
    json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "payfast"})
}

/// Checks out `body` and answers the order's id.
pub(crate) async fn order_id(app: &TestApp, token: &str, body: Value) -> String {
    order(app, token, body).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Checks out `body` and answers the order's body.
pub(crate) async fn order(app: &TestApp, token: &str, body: Value) -> Value {
    let res = checkout(app, token, body, None).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// PHP's `urlencode` for the values tests use (form encoding differs only on `*` and `~`).
fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A notification as PayFast posts it, signed with `passphrase`.
pub(crate) fn itn_signed(fields: &[(&str, &str)], passphrase: &str) -> String {
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature = md5_hex(&format!("{}&passphrase={passphrase}", encode(&pairs)));
    pairs.push(("signature".into(), signature));
    encode(&pairs)
}

pub(crate) fn itn(order_id: &str, pf_payment_id: &str, amount: &str, status: &str) -> String {
    itn_signed(
        &[
            ("m_payment_id", order_id),
            ("pf_payment_id", pf_payment_id),
            ("payment_status", status),
            ("item_name", "CapeControl Pro (monthly)"),
            ("item_description", ""),
            ("amount_gross", amount),
            ("amount_fee", "-12.17"),
            ("amount_net", "516.83"),
            ("name_first", "Thandi"),
            ("email_address", "thandi@example.com"),
            ("merchant_id", MERCHANT_ID),
            ("token", "dc0521d3-55fe-269b-fa00-b647310d760f"),
        ],
        PASSPHRASE,
    )
}

pub(crate) async fn post_itn(app: &TestApp, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/api/payments/payfast/itn"))
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn itn_result(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["result"].as_str().unwrap().to_owned()
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

pub(crate) async fn ledger_check(app: &TestApp) -> Value {
    app.admin_get("/api/admin/ledger/check").await
}

fn year() -> i32 {
    chrono::Utc::now().year()
}

async fn the_catalogue_lists_the_plans_and_credit_packs_priced_in_cents(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let plans: Value = app.get("/api/billing/plans").await.json().await.unwrap();
    let got: Vec<_> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_owned(),
                p["monthly_cents"].as_i64().unwrap(),
                p["yearly_cents"].as_i64().unwrap(),
                p["limits"]["assistant_messages"].as_i64().unwrap(),
                p["limits"]["agent_runs"].as_i64().unwrap(),
                p["limits"]["agents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("free".into(), 0, 0, 50, 50, 3),
            ("pro".into(), 52900, 499000, 2000, 2000, 50),
            ("enterprise".into(), 179900, 1719000, 8000, 8000, 500),
        ]
    );
    assert!(plans
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["currency"] == "ZAR" && !p["features"].as_array().unwrap().is_empty()));
    let packs: Value = app
        .get("/api/billing/credit-packs")
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<_> = packs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_owned(),
                p["price_cents"].as_i64().unwrap(),
                p["credit_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("small".into(), 10000, 10000),
            ("medium".into(), 50000, 52500),
            ("large".into(), 100000, 110000),
        ]
    );
}

async fn a_new_account_is_on_free_and_active(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let res = get_authed(&app, "/api/billing/subscription", &s.access).await;
    assert_eq!(res.status(), 200);
    let sub: Value = res.json().await.unwrap();
    assert_eq!(
        sub,
        json!({"plan": "free", "cycle": null, "status": "active", "current_period_start": null,
               "current_period_end": null, "cancel_at_period_end": false, "provider": null})
    );
    assert_problem(app.get("/api/billing/subscription").await, 401).await;
    let credits = get_json(&app, "/api/billing/credits", &s.access).await;
    assert_eq!(credits["balance_cents"], 0);
    assert_eq!(credits["transactions"], json!([]));
}

async fn a_payfast_checkout_answers_a_form_signed_over_catalogue_prices(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let body = order(&app, &s.access, pro_monthly()).await;
    let order_id = body["order_id"].as_str().unwrap();
    assert_eq!(body["provider"], "payfast");
    assert_eq!(body["amount_cents"], 52900);
    assert_eq!(body["currency"], "ZAR");
    assert_eq!(body["redirect"]["method"], "POST");
    assert_eq!(
        body["redirect"]["url"],
        "https://sandbox.payfast.co.za/eng/process"
    );
    let fields = body["redirect"]["fields"].as_object().unwrap();
    let f = |k: &str| fields[k].as_str().unwrap().to_owned();
    assert_eq!(f("merchant_id"), MERCHANT_ID);
    assert_eq!(f("merchant_key"), MERCHANT_KEY);
    assert_eq!(f("m_payment_id"), order_id);
    assert_eq!(f("amount"), "529.00");
    assert_eq!(f("recurring_amount"), "529.00");
    assert_eq!(f("subscription_type"), "1");
    assert_eq!(f("frequency"), "3");
    assert_eq!(f("cycles"), "0");
    assert_eq!(
        f("notify_url"),
        "https://capecontrol.example/api/payments/payfast/itn"
    );
    // The signature, recomputed here over the fields in PayFast's documented order.
    let order = [
        "merchant_id",
        "merchant_key",
        "return_url",
        "cancel_url",
        "notify_url",
        "name_first",
        "name_last",
        "email_address",
        "m_payment_id",
        "amount",
        "item_name",
        "subscription_type",
        "billing_date",
        "recurring_amount",
        "frequency",
        "cycles",
    ];
    let pairs: Vec<(String, String)> = order.iter().map(|k| ((*k).to_owned(), f(k))).collect();
    let expected = md5_hex(&format!("{}&passphrase={PASSPHRASE}", encode(&pairs)));
    assert_eq!(f("signature"), expected);
    // Yearly is frequency 6 at the yearly price; credits are a one-off payment.
    let yearly = order_body(&app, &s.access, json!({"kind": "subscription", "plan": "enterprise", "cycle": "yearly", "provider": "payfast"})).await;
    assert_eq!(yearly["amount_cents"], 1719000);
    assert_eq!(yearly["redirect"]["fields"]["frequency"], "6");
    assert_eq!(yearly["redirect"]["fields"]["amount"], "17190.00");
    let credits = order_body(
        &app,
        &s.access,
        json!({"kind": "credits", "pack": "large", "provider": "payfast"}),
    )
    .await;
    assert_eq!(credits["amount_cents"], 100000);
    assert!(credits["redirect"]["fields"]
        .get("subscription_type")
        .is_none());
    // A client cannot name a price, a free plan or an unknown pack.
    for bad in [
        json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "payfast", "amount": 1}),
        json!({"kind": "subscription", "plan": "free", "cycle": "monthly", "provider": "payfast"}),
        json!({"kind": "credits", "pack": "huge", "provider": "payfast"}),
        json!({"kind": "gift", "provider": "payfast"}),
    ] {
        assert_problem(checkout(&app, &s.access, bad, None).await, 422).await;
    }
}

async fn order_body(app: &TestApp, token: &str, body: Value) -> Value {
    order(app, token, body).await
}

async fn a_checkout_retried_with_the_same_idempotency_key_answers_the_same_order(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let first = checkout(&app, &s.access, pro_monthly(), Some("key-1")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = checkout(&app, &s.access, pro_monthly(), Some("key-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    // Concurrent retries of a new key make one order too.
    let racing = futures::future::join_all(
        (0..5).map(|_| checkout(&app, &s.access, pro_monthly(), Some("key-2"))),
    )
    .await;
    let mut ids = std::collections::BTreeSet::new();
    for res in racing {
        assert_eq!(res.status(), 201);
        ids.insert(res.json::<Value>().await.unwrap()["order_id"].to_string());
    }
    assert_eq!(ids.len(), 1);
    // The same key for something else is a conflict; another user's same key is their own.
    let other = json!({"kind": "credits", "pack": "small", "provider": "payfast"});
    assert_problem(checkout(&app, &s.access, other, Some("key-1")).await, 409).await;
    let t = register_customer(&app).await;
    let theirs: Value = checkout(&app, &t.access, pro_monthly(), Some("key-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(theirs["order_id"], first["order_id"]);
    assert_problem(
        checkout(&app, &s.access, pro_monthly(), Some("bad key")).await,
        422,
    )
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM billing_orders").await, 3);
}

async fn a_provider_without_its_settings_answers_503_saying_so(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let body = assert_problem(checkout(&app, &s.access, pro_monthly(), None).await, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("PayFast is not configured"),
        "{body}"
    );
    let stripe = json!({"kind": "credits", "pack": "small", "provider": "stripe"});
    let body = assert_problem(checkout(&app, &s.access, stripe, None).await, 503).await;
    assert!(
        body["detail"].as_str().unwrap().contains("Stripe"),
        "{body}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM billing_orders").await, 0);
    let status: Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(status["features"]["payfast"], false, "{status}");
    // Notifications are refused, not applied, while PayFast is off.
    assert_problem(
        post_itn(
            &app,
            itn(&uuid::Uuid::now_v7().to_string(), "1", "529.00", "COMPLETE"),
        )
        .await,
        400,
    )
    .await;
}

async fn the_compat_checkout_answers_payfasts_form_for_a_product_code(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let res = post_authed(
        &app,
        "/api/payments/payfast/checkout",
        &s.access,
        &json!({"product_code": "ENTERPRISE_MONTHLY"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["process_url"],
        "https://sandbox.payfast.co.za/eng/process"
    );
    assert_eq!(body["fields"]["amount"], "1799.00");
    assert_eq!(body["fields"]["frequency"], "3");
    assert!(body["fields"]["signature"].as_str().unwrap().len() == 32);
    let res = post_authed(
        &app,
        "/api/payments/payfast/checkout",
        &s.access,
        &json!({"product_code": "FREE_FOREVER"}),
    )
    .await;
    assert_problem(res, 422).await;
}

async fn a_complete_itn_pays_the_order_once_with_invoice_ledger_and_receipt(backend: Backend) {
    let (app, fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let res = post_itn(&app, itn(&order_id, "1089250", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["cycle"], "monthly");
    assert_eq!(sub["provider"], "payfast");
    let invoices = get_json(&app, "/api/billing/invoices", &s.access).await;
    assert_eq!(invoices["total"], 1);
    let invoice = &invoices["items"][0];
    assert_eq!(invoice["number"], format!("CC-{}-000001", year()));
    assert_eq!(invoice["status"], "paid");
    assert_eq!(invoice["amount_cents"], 52900);
    assert_eq!(invoice["refunded_cents"], 0);
    assert_eq!(invoice["provider_payment_id"], "1089250");
    assert_eq!(invoice["lines"][0]["amount_cents"], 52900);
    assert!(invoice["paid_at"].is_string());
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 1, "unbalanced": 0})
    );
    let receipts = outbox(&app, "billing_receipt", &s.email).await;
    assert_eq!(receipts.len(), 1);
    assert!(receipts[0]["text"].as_str().unwrap().contains("R529.00"));
    // The same notification again answers 200 and does nothing.
    let res = post_itn(&app, itn(&order_id, "1089250", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "duplicate");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        1
    );
    assert_eq!(ledger_check(&app).await["transactions"], 1);
    assert_eq!(outbox(&app, "billing_receipt", &s.email).await.len(), 1);
}

async fn every_refused_itn_is_a_400_that_changes_nothing_and_is_audited(backend: Backend) {
    let (app, fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let good = |pf: &str| {
        vec![
            ("m_payment_id", order_id.clone()),
            ("pf_payment_id", pf.to_owned()),
            ("payment_status", "COMPLETE".to_owned()),
            ("amount_gross", "529.00".to_owned()),
            ("merchant_id", MERCHANT_ID.to_owned()),
        ]
    };
    let sign = |fields: &[(&str, String)], pass: &str| {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        itn_signed(&f, pass)
    };
    let set = |mut fields: Vec<(&'static str, String)>, k: &str, v: &str| {
        for f in fields.iter_mut().filter(|f| f.0 == k) {
            f.1 = v.to_owned();
        }
        fields
    };
    let tampered = sign(&good("2"), PASSPHRASE).replace("529.00", "1.00");
    let cases: Vec<(&str, String)> = vec![
        ("a wrong passphrase", sign(&good("1"), "guessed-passphrase")),
        ("a field changed after signing", tampered),
        (
            "no signature",
            encode(
                &good("3")
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "another merchant",
            sign(&set(good("4"), "merchant_id", "10000999"), PASSPHRASE),
        ),
        (
            "a lower amount",
            sign(&set(good("5"), "amount_gross", "1.00"), PASSPHRASE),
        ),
        (
            "an amount two cents off",
            sign(&set(good("6"), "amount_gross", "528.98"), PASSPHRASE),
        ),
        (
            "an unknown order",
            sign(
                &set(good("7"), "m_payment_id", &uuid::Uuid::now_v7().to_string()),
                PASSPHRASE,
            ),
        ),
        (
            "an order id that is no id",
            sign(&set(good("8"), "m_payment_id", "1234"), PASSPHRASE),
        ),
        (
            "no payment id",
            sign(&set(good("9"), "pf_payment_id", ""), PASSPHRASE),
        ),
    ];
    let n = cases.len() as i64;
    for (what, body) in cases {
        let res = post_itn(&app, body).await;
        assert_eq!(res.status(), 400, "{what}");
        assert_problem(res, 400).await;
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "refused before asking PayFast"
    );
    // PayFast answering INVALID refuses too; so does a body that is not a form.
    fake.answer("INVALID");
    assert_problem(
        post_itn(&app, itn(&order_id, "10", "529.00", "COMPLETE")).await,
        400,
    )
    .await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    let res = app
        .client
        .post(app.url("/api/payments/payfast/itn"))
        .json(&json!({"m_payment_id": order_id}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 415).await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM ledger_transactions").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_subscriptions").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM audit_events WHERE action = 'payment_notification_refused' AND outcome = 'failure'").await,
        n + 1
    );
    let details: Vec<String> = sqlx::query(
        "SELECT details FROM audit_events WHERE action = 'payment_notification_refused'",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("details"))
    .collect();
    assert!(
        details
            .iter()
            .all(|d| !d.contains(PASSPHRASE) && !d.contains("signature\":\"")),
        "{details:?}"
    );
    // The order can still be paid by the real notification.
    fake.answer("VALID");
    let res = post_itn(&app, itn(&order_id, "11", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
}

async fn an_itn_is_believed_only_from_payfasts_networks_resolved_through_trusted_proxies(
    backend: Backend,
) {
    let (app, _fake) = spawn_with_payfast(
        backend,
        &[
            ("PAYFAST_VALID_SOURCES", "197.97.145.144/28"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let from = |ip: &'static str, pf: &'static str| {
        app.client
            .post(app.url("/api/payments/payfast/itn"))
            .header("content-type", FORM)
            .header("x-forwarded-for", ip)
            .body(itn(&order_id, pf, "529.00", "COMPLETE"))
            .send()
    };
    let body = assert_problem(from("6.6.6.6", "1").await.unwrap(), 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("6.6.6.6"),
        "{body}"
    );
    // A client-written hop to the left of the one the proxy wrote is not believed.
    assert_problem(from("197.97.145.150, 6.6.6.6", "2").await.unwrap(), 400).await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        0
    );
    assert_eq!(
        itn_result(from("197.97.145.150", "3").await.unwrap()).await,
        "applied"
    );
}

async fn an_itn_is_refused_while_payfast_cannot_be_asked_to_confirm_it(backend: Backend) {
    // Nothing listens on the discard port: the confirmation cannot be had.
    let closed = "http://127.0.0.1:9/eng/query/validate";
    let (app, _fake) = spawn_with_payfast(backend, &[("PAYFAST_VALIDATE_URL", closed)]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let body = assert_problem(
        post_itn(&app, itn(&order_id, "42", "529.00", "COMPLETE")).await,
        400,
    )
    .await;
    assert_eq!(body["detail"], "PayFast did not confirm the notification.");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_notifications").await,
        0
    );
}

async fn ten_identical_itns_at_once_have_exactly_one_effect(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[("DATABASE_MAX_CONNECTIONS", "12")]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let body = itn(&order_id, "777", "529.00", "COMPLETE");
    let answers = futures::future::join_all((0..10).map(|_| post_itn(&app, body.clone()))).await;
    let mut results = Vec::new();
    for res in answers {
        results.push(itn_result(res).await);
    }
    results.sort();
    assert_eq!(
        results.iter().filter(|r| *r == "applied").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "duplicate").count(),
        9,
        "{results:?}"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        1
    );
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 1, "unbalanced": 0})
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM mail_outbox WHERE template = 'billing_receipt'"
        )
        .await,
        1
    );
}

pub(crate) async fn subscription(app: &TestApp, token: &str) -> Value {
    get_json(app, "/api/billing/subscription", token).await
}

pub(crate) fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn a_renewal_itn_extends_the_period_and_makes_a_new_invoice(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "5001", "529.00", "COMPLETE")).await).await;
    let first = subscription(&app, &s.access).await;
    let (start, end) = (
        at(&first["current_period_start"]),
        at(&first["current_period_end"]),
    );
    assert_eq!(
        end,
        start.checked_add_months(chrono::Months::new(1)).unwrap()
    );
    let res = post_itn(&app, itn(&order_id, "5002", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let renewed = subscription(&app, &s.access).await;
    assert_eq!(at(&renewed["current_period_start"]), end);
    assert_eq!(
        at(&renewed["current_period_end"]),
        end.checked_add_months(chrono::Months::new(1)).unwrap()
    );
    let invoices = get_json(&app, "/api/billing/invoices?per_page=1&page=1", &s.access).await;
    assert_eq!(invoices["total"], 2);
    assert_eq!(invoices["items"].as_array().unwrap().len(), 1);
    let numbers: Vec<String> = sqlx::query("SELECT number FROM billing_invoices ORDER BY number")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("number"))
        .collect();
    assert_eq!(
        numbers,
        [
            format!("CC-{}-000001", year()),
            format!("CC-{}-000002", year())
        ]
    );
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 2, "unbalanced": 0})
    );
}

async fn a_cancelled_itn_ends_the_subscription_with_its_paid_period(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "6001", "529.00", "COMPLETE")).await).await;
    let res = post_itn(&app, itn(&order_id, "6001", "529.00", "CANCELLED")).await;
    assert_eq!(itn_result(res).await, "applied");
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["status"], "canceled");
    assert_eq!(sub["cancel_at_period_end"], true);
    let res = post_itn(&app, itn(&order_id, "6001", "529.00", "CANCELLED")).await;
    assert_eq!(itn_result(res).await, "duplicate");
    assert_problem(
        authed(
            &app,
            Method::POST,
            "/api/billing/subscription/resume",
            &s.access,
        )
        .send()
        .await
        .unwrap(),
        409,
    )
    .await;
    // Once the paid period is over, the account is on free again.
    sqlx::query("UPDATE billing_subscriptions SET current_period_end = 1")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(subscription(&app, &s.access).await["plan"], "free");
}

async fn a_credit_pack_payment_adds_credits_read_from_a_balanced_ledger(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let body = order(
        &app,
        &s.access,
        json!({"kind": "credits", "pack": "medium", "provider": "payfast"}),
    )
    .await;
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(body["amount_cents"], 50000);
    let res = post_itn(&app, itn(&order_id, "7001", "500.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let credits = get_json(&app, "/api/billing/credits", &s.access).await;
    assert_eq!(credits["balance_cents"], 52500);
    assert_eq!(credits["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(credits["transactions"][0]["amount_cents"], 52500);
    assert_eq!(credits["transactions"][0]["kind"], "credit_purchase");
    // A second payment of a one-off order is refused; the plan is untouched.
    assert_problem(
        post_itn(&app, itn(&order_id, "7002", "500.00", "COMPLETE")).await,
        400,
    )
    .await;
    assert_eq!(subscription(&app, &s.access).await["plan"], "free");
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 1, "unbalanced": 0})
    );
    let sums: i64 = count(
        &app,
        "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM ledger_entries",
    )
    .await;
    assert_eq!(sums, 0);
}

async fn invoice_numbers_stay_sequential_without_gaps_under_concurrent_payments(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[("DATABASE_MAX_CONNECTIONS", "10")]).await;
    let s = register_customer(&app).await;
    let mut bodies = Vec::new();
    for i in 0..8 {
        let id = order(
            &app,
            &s.access,
            json!({"kind": "credits", "pack": "small", "provider": "payfast"}),
        )
        .await["order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        bodies.push(itn(&id, &format!("800{i}"), "100.00", "COMPLETE"));
    }
    let answers = futures::future::join_all(bodies.into_iter().map(|b| post_itn(&app, b))).await;
    for res in answers {
        assert_eq!(itn_result(res).await, "applied");
    }
    let numbers: Vec<String> = sqlx::query("SELECT number FROM billing_invoices ORDER BY number")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("number"))
        .collect();
    let expected: Vec<String> = (1..=8).map(|n| format!("CC-{}-{n:06}", year())).collect();
    assert_eq!(numbers, expected);
    let credits = get_json(&app, "/api/billing/credits", &s.access).await;
    assert_eq!(credits["balance_cents"], 80000);
}

async fn another_users_invoice_is_404_and_an_admin_sees_it(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "9001", "529.00", "COMPLETE")).await).await;
    let id = count_id(&app).await;
    let path = format!("/api/billing/invoices/{id}");
    let mine = get_json(&app, &path, &s.access).await;
    assert_eq!(mine["id"], id);
    let other = register_customer(&app).await;
    let theirs = assert_problem(get_authed(&app, &path, &other.access).await, 404).await;
    let none = assert_problem(
        get_authed(
            &app,
            &format!("/api/billing/invoices/{}", uuid::Uuid::now_v7()),
            &other.access,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(
        theirs["detail"], none["detail"],
        "the same answer as for no invoice"
    );
    assert_problem(
        get_authed(&app, "/api/billing/invoices/not-an-id", &s.access).await,
        404,
    )
    .await;
    let list = get_json(&app, "/api/billing/invoices", &other.access).await;
    assert_eq!(list["total"], 0);
    assert_eq!(app.admin_get(&path).await["number"], mine["number"]);
}

async fn count_id(app: &TestApp) -> String {
    sqlx::query("SELECT id FROM billing_invoices")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("id")
}

async fn cancel_resume_and_switching_to_free_change_only_a_running_paid_plan(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let post = |path: &'static str| authed(&app, Method::POST, path, &s.access).send();
    assert_problem(post("/api/billing/subscription/cancel").await.unwrap(), 409).await;
    assert_problem(post("/api/billing/subscription/resume").await.unwrap(), 409).await;
    let free = post_authed(
        &app,
        "/api/billing/subscription",
        &s.access,
        &json!({"plan": "free"}),
    )
    .await;
    assert_eq!(free.status(), 200);
    assert_eq!(free.json::<Value>().await.unwrap()["plan"], "free");
    assert_problem(
        post_authed(
            &app,
            "/api/billing/subscription",
            &s.access,
            &json!({"plan": "pro"}),
        )
        .await,
        422,
    )
    .await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "9101", "529.00", "COMPLETE")).await).await;
    let to_free: Value = post_authed(
        &app,
        "/api/billing/subscription",
        &s.access,
        &json!({"plan": "free"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        to_free["plan"], "pro",
        "free takes effect at the end of the paid period"
    );
    assert_eq!(to_free["cancel_at_period_end"], true);
    // PayFast's subscription was cancelled through its API: it cannot be resumed, and cancelling
    // again answers it as it stands.
    assert_eq!(to_free["status"], "canceled");
    assert_problem(post("/api/billing/subscription/resume").await.unwrap(), 409).await;
    let canceled: Value = post("/api/billing/subscription/cancel")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(canceled, to_free);
}

async fn the_ledger_check_is_for_admins_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    assert_problem(
        get_authed(&app, "/api/admin/ledger/check", &s.access).await,
        403,
    )
    .await;
    assert_problem(app.get("/api/admin/ledger/check").await, 401).await;
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 0, "unbalanced": 0})
    );
}

async fn an_unpaid_period_is_past_due_for_the_grace_days_then_free(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[("BILLING_GRACE_DAYS", "3")]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "9201", "529.00", "COMPLETE")).await).await;
    let day = 86_400_000_000_i64;
    let ended = |days_ago: i64| {
        let end = chrono::Utc::now().timestamp_micros() - days_ago * day;
        sqlx::query("UPDATE billing_subscriptions SET current_period_end = $1")
            .bind(end)
            .execute(app.state.db.pool())
    };
    ended(2).await.unwrap();
    let sub = subscription(&app, &s.access).await;
    assert_eq!(
        (sub["plan"].as_str(), sub["status"].as_str()),
        (Some("pro"), Some("past_due"))
    );
    assert_problem(
        authed(
            &app,
            Method::POST,
            "/api/billing/subscription/cancel",
            &s.access,
        )
        .send()
        .await
        .unwrap(),
        409,
    )
    .await;
    ended(4).await.unwrap();
    let sub = subscription(&app, &s.access).await;
    assert_eq!(
        (sub["plan"].as_str(), sub["status"].as_str()),
        (Some("free"), Some("active"))
    );
}

async fn two_paid_periods_of_one_plan_at_once_extend_it_twice(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let mut bodies = Vec::new();
    for i in 0..2 {
        let id = order_id(&app, &s.access, pro_monthly()).await;
        bodies.push(itn(&id, &format!("930{i}"), "529.00", "COMPLETE"));
    }
    let answers = futures::future::join_all(bodies.into_iter().map(|b| post_itn(&app, b))).await;
    for res in answers {
        assert_eq!(itn_result(res).await, "applied");
    }
    // The second payment to commit extends the first's period: two months from the first (each
    // payment takes the account's subscription row before reading the period).
    let sub = subscription(&app, &s.access).await;
    let (start, end) = (
        at(&sub["current_period_start"]),
        at(&sub["current_period_end"]),
    );
    let month = chrono::Months::new(1);
    assert_eq!(end, start.checked_add_months(month).unwrap(), "{sub}");
    let paid: Vec<i64> = sqlx::query("SELECT paid_at FROM billing_invoices")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("paid_at"))
        .collect();
    assert!(
        paid.iter().any(|p| {
            let first = chrono::DateTime::from_timestamp_micros(*p).unwrap();
            first.checked_add_months(month) == Some(start)
        }),
        "{sub} {paid:?}"
    );
}

async fn a_cancel_at_the_same_time_as_a_renewal_keeps_the_renewed_period(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    // A cancel reads the subscription and writes it back with its flag set: without the row
    // taken first, a renewal committed in between was overwritten with the old period.
    for round in 0..12 {
        let s = register_customer(&app).await;
        let order_id = order_id(&app, &s.access, pro_monthly()).await;
        let first = itn(&order_id, &format!("95{round:02}1"), "529.00", "COMPLETE");
        assert_eq!(itn_result(post_itn(&app, first).await).await, "applied");
        let end = at(&subscription(&app, &s.access).await["current_period_end"]);
        let renewal = itn(&order_id, &format!("95{round:02}2"), "529.00", "COMPLETE");
        let cancel = authed(
            &app,
            Method::POST,
            "/api/billing/subscription/cancel",
            &s.access,
        )
        .send();
        let (renewed, canceled) = tokio::join!(post_itn(&app, renewal), cancel);
        assert_eq!(itn_result(renewed).await, "applied");
        assert_eq!(canceled.unwrap().status(), 200);
        let sub = subscription(&app, &s.access).await;
        assert_eq!(
            at(&sub["current_period_end"]),
            end.checked_add_months(chrono::Months::new(1)).unwrap(),
            "round {round}: {sub}"
        );
    }
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().unwrap()
}

async fn a_period_anchored_on_the_31st_ends_on_the_last_day_of_a_shorter_month_and_returns_to_the_31st(
    backend: Backend,
) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    // 23:30 on 31 January in Johannesburg is still the 31st in UTC.
    app.state.clock.set(utc("2027-01-31T21:30:00Z"));
    itn_result(post_itn(&app, itn(&order_id, "9701", "529.00", "COMPLETE")).await).await;
    let sub = subscription(&app, &s.access).await;
    let anchor = at(&sub["current_period_start"]);
    assert_eq!(anchor.date_naive().to_string(), "2027-01-31", "{sub}");
    let end = at(&sub["current_period_end"]);
    assert_eq!(end - anchor, chrono::Duration::days(28), "{sub}");
    app.state.clock.set(utc("2027-02-27T21:30:00Z"));
    itn_result(post_itn(&app, itn(&order_id, "9702", "529.00", "COMPLETE")).await).await;
    let sub = subscription(&app, &s.access).await;
    assert_eq!(at(&sub["current_period_start"]), end, "{sub}");
    // Counted from the anchor, not from 28 February: the 31st again.
    assert_eq!(
        at(&sub["current_period_end"]).date_naive().to_string(),
        "2027-03-31",
        "{sub}"
    );
    let invoice = &get_json(&app, "/api/billing/invoices", &s.access).await["items"][0];
    assert!(
        invoice["number"].as_str().unwrap().starts_with("CC-2027-"),
        "{invoice}"
    );
}

async fn a_cancellation_delivered_before_its_payment_still_ends_the_subscription(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    post_itn(&app, itn(&order_id, "9801", "529.00", "CANCELLED")).await;
    let res = post_itn(&app, itn(&order_id, "9801", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["plan"], "pro", "{sub}");
    assert_eq!(sub["status"], "canceled", "{sub}");
    assert_eq!(sub["cancel_at_period_end"], true, "{sub}");
}

async fn a_renewal_delivered_after_its_cancellation_extends_the_paid_period_and_stays_canceled(
    backend: Backend,
) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    itn_result(post_itn(&app, itn(&order_id, "9901", "529.00", "COMPLETE")).await).await;
    let end = at(&subscription(&app, &s.access).await["current_period_end"]);
    itn_result(post_itn(&app, itn(&order_id, "9901", "529.00", "CANCELLED")).await).await;
    // PayFast took the renewal before the cancellation but delivered it after.
    let res = post_itn(&app, itn(&order_id, "9902", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["status"], "canceled", "{sub}");
    assert_eq!(sub["cancel_at_period_end"], true, "{sub}");
    assert_eq!(
        at(&sub["current_period_end"]),
        end.checked_add_months(chrono::Months::new(1)).unwrap(),
        "{sub}"
    );
}

/// A time to the minute (the moved clock runs on while a test acts).
fn minute(value: &Value) -> String {
    at(value).format("%Y-%m-%dT%H:%M").to_string()
}

async fn periods_and_invoice_years_follow_the_calendar_in_johannesburg(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    // 01:00 on 1 January 2028 in Johannesburg: still 31 December 2027 in UTC.
    app.state.clock.set(utc("2027-12-31T23:00:00Z"));
    itn_result(post_itn(&app, itn(&order_id, "9601", "529.00", "COMPLETE")).await).await;
    let invoice = &get_json(&app, "/api/billing/invoices", &s.access).await["items"][0];
    assert_eq!(invoice["number"], "CC-2028-000001", "{invoice}");
    // Paid on 1 January there, it renews on 1 February there (UTC's date would say 31 January).
    let sub = subscription(&app, &s.access).await;
    assert_eq!(
        minute(&sub["current_period_end"]),
        "2028-01-31T23:00",
        "{sub}"
    );
    let order_id = order(
        &app,
        &s.access,
        json!({"kind": "subscription", "plan": "enterprise",
        "cycle": "monthly", "provider": "payfast"}),
    )
    .await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 01:00 on 1 March 2028 there (a leap year): 23:00 on 29 February in UTC. Renews 1 April.
    app.state.clock.set(utc("2028-02-29T23:00:00Z"));
    itn_result(post_itn(&app, itn(&order_id, "9602", "1799.00", "COMPLETE")).await).await;
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["plan"], "enterprise", "{sub}");
    assert_eq!(
        minute(&sub["current_period_start"]),
        "2028-02-29T23:00",
        "{sub}"
    );
    assert_eq!(
        minute(&sub["current_period_end"]),
        "2028-03-31T23:00",
        "{sub}"
    );
}

async fn ten_identical_itns_split_over_two_instances_have_exactly_one_effect(backend: Backend) {
    let (app, fake) = spawn_with_payfast(backend, &[]).await;
    // A second instance of the service on the same database, serving HTTP on its own port.
    let mut vars = crate::helpers::base_vars(&app.db);
    for (k, v) in [
        ("PAYFAST_MERCHANT_ID", MERCHANT_ID),
        ("PAYFAST_MERCHANT_KEY", MERCHANT_KEY),
        ("PAYFAST_PASSPHRASE", PASSPHRASE),
        ("PAYFAST_VALIDATE_URL", fake.url.as_str()),
        ("PAYFAST_VALID_SOURCES", "127.0.0.1/32"),
        ("PUBLIC_BASE_URL", "https://capecontrol.example"),
    ] {
        vars.insert(k.into(), v.into());
    }
    let second = autorisen::app::App::build(crate::helpers::config_from(&vars))
        .await
        .expect("a second instance");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { second.serve(listener, std::future::pending()).await });
    let s = register_customer(&app).await;
    let order_id = order_id(&app, &s.access, pro_monthly()).await;
    let body = itn(&order_id, "7780", "529.00", "COMPLETE");
    let deliveries = (0..10).map(|i| {
        let base = if i % 2 == 0 {
            app.address.clone()
        } else {
            other.clone()
        };
        let (client, body) = (app.client.clone(), body.clone());
        async move {
            client
                .post(format!("{base}/api/payments/payfast/itn"))
                .header("content-type", FORM)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    });
    let mut results = Vec::new();
    for res in futures::future::join_all(deliveries).await {
        results.push(itn_result(res).await);
    }
    results.sort();
    let mut want = vec!["applied".to_owned()];
    want.extend(std::iter::repeat_n("duplicate".to_owned(), 9));
    assert_eq!(results, want);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM mail_outbox WHERE template = 'billing_receipt'"
        )
        .await,
        1
    );
    assert_eq!(
        ledger_check(&app).await,
        json!({"transactions": 1, "unbalanced": 0})
    );
}
