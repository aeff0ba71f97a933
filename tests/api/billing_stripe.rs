//! Billing through Stripe, against a local fake of Stripe's Checkout Sessions API: sessions made
//! once per order, and signed webhook events applied once.

use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_stripe_checkout_makes_one_session_through_the_api_and_answers_its_page,
    a_signed_checkout_completed_event_pays_the_order_once,
    forged_stale_or_mismatched_stripe_events_are_refused_and_change_nothing,
    a_deleted_stripe_subscription_ends_with_its_paid_period,
);

pub(crate) const SECRET_KEY: &str = "sk_test_fake";
pub(crate) const WEBHOOK_SECRET: &str = "whsec_test_fake";

/// What the fake saw: each session request's form fields and Idempotency-Key.
pub(crate) type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

async fn fake_stripe() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let router = axum::Router::new().route(
        "/v1/checkout/sessions",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                assert_eq!(auth, format!("Bearer {SECRET_KEY}"));
                let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let id = format!("cs_test_{}", key.replace('-', ""));
                log.lock().unwrap().push((form, key));
                axum::Json(json!({
                    "id": id, "object": "checkout.session",
                    "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), seen)
}

pub(crate) async fn spawn_with_stripe(backend: Backend) -> (TestApp, Seen) {
    let (base, seen) = fake_stripe().await;
    let app = TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_API_BASE", base.as_str()),
            ("PUBLIC_BASE_URL", "https://capecontrol.example"),
        ],
    )
    .await;
    (app, seen)
}

pub(crate) async fn checkout(app: &TestApp, token: &str, body: Value, key: &str) -> Value {
    let res = authed(app, Method::POST, "/api/billing/checkout", token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

pub(crate) fn pro_monthly() -> Value {
    json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "stripe"})
}

pub(crate) fn signature(body: &str, t: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn completed(event: &str, session: &str, order_id: &str, amount: i64) -> String {
    json!({
        "id": event, "type": "checkout.session.completed",
        "data": {"object": {
            "id": session, "object": "checkout.session", "client_reference_id": order_id,
            "metadata": {"order_id": order_id}, "amount_total": amount, "currency": "zar",
            "payment_status": "paid", "subscription": "sub_test_1",
        }},
    })
    .to_string()
}

pub(crate) async fn deliver(app: &TestApp, body: &str, signature: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/payments/stripe/webhook"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

pub(crate) async fn result(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["result"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn a_stripe_checkout_makes_one_session_through_the_api_and_answers_its_page(
    backend: Backend,
) {
    let (app, seen) = spawn_with_stripe(backend).await;
    let s = register_customer(&app).await;
    let body = checkout(&app, &s.access, pro_monthly(), "k1").await;
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(body["provider"], "stripe");
    assert_eq!(body["amount_cents"], 52900);
    assert_eq!(body["redirect"]["method"], "GET");
    let url = body["redirect"]["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("https://checkout.stripe.test/c/pay/cs_test_"),
        "{url}"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (form, key) = &seen[0];
        assert_eq!(key, &order_id, "the order id is Stripe's idempotency key");
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("client_reference_id").as_deref(),
            Some(order_id.as_str())
        );
        assert_eq!(
            get("metadata[order_id]").as_deref(),
            Some(order_id.as_str())
        );
        assert_eq!(get("mode").as_deref(), Some("subscription"));
        assert_eq!(
            get("line_items[0][price_data][unit_amount]").as_deref(),
            Some("52900")
        );
        assert_eq!(
            get("line_items[0][price_data][currency]").as_deref(),
            Some("zar")
        );
        assert_eq!(
            get("line_items[0][price_data][recurring][interval]").as_deref(),
            Some("month")
        );
    }
    // A retry answers the same page without asking Stripe again.
    let again = checkout(&app, &s.access, pro_monthly(), "k1").await;
    assert_eq!(again, body);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let credits = checkout(
        &app,
        &s.access,
        json!({"kind": "credits", "pack": "small", "provider": "stripe"}),
        "k2",
    )
    .await;
    assert_eq!(credits["amount_cents"], 10000);
    let payment = seen.lock().unwrap()[1].0.clone();
    assert!(payment.iter().any(|(k, v)| k == "mode" && v == "payment"));
    let status: Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(status["features"]["stripe"], true, "{status}");
}

async fn a_signed_checkout_completed_event_pays_the_order_once(backend: Backend) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let s = register_customer(&app).await;
    let order_id = checkout(&app, &s.access, pro_monthly(), "k1").await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = completed("evt_1", "cs_test_1", &order_id, 52900);
    let sig = signature(&body, now(), WEBHOOK_SECRET);
    assert_eq!(result(deliver(&app, &body, &sig).await).await, "applied");
    let sub = get_json(&app, "/api/billing/subscription", &s.access).await;
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["provider"], "stripe");
    let invoices = get_json(&app, "/api/billing/invoices", &s.access).await;
    assert_eq!(invoices["total"], 1);
    assert_eq!(invoices["items"][0]["provider"], "stripe");
    assert_eq!(invoices["items"][0]["provider_payment_id"], "cs_test_1");
    // Delivered again (Stripe retries), at once or later: one effect.
    let answers = futures::future::join_all((0..5).map(|_| deliver(&app, &body, &sig))).await;
    for res in answers {
        assert_eq!(result(res).await, "duplicate");
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        1
    );
    let check = app.admin_get("/api/admin/ledger/check").await;
    assert_eq!(check, json!({"transactions": 1, "unbalanced": 0}));
    // An event of a kind with no effect here is answered 200.
    let other =
        json!({"id": "evt_2", "type": "customer.created", "data": {"object": {}}}).to_string();
    let sig = signature(&other, now(), WEBHOOK_SECRET);
    assert_eq!(result(deliver(&app, &other, &sig).await).await, "ignored");
}

async fn forged_stale_or_mismatched_stripe_events_are_refused_and_change_nothing(backend: Backend) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let s = register_customer(&app).await;
    let order_id = checkout(&app, &s.access, pro_monthly(), "k1").await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = completed("evt_1", "cs_test_1", &order_id, 52900);
    let cheap = completed("evt_2", "cs_test_2", &order_id, 100);
    let unknown = completed(
        "evt_3",
        "cs_test_3",
        &uuid::Uuid::now_v7().to_string(),
        52900,
    );
    let cases = [
        (
            "another secret",
            body.clone(),
            signature(&body, now(), "whsec_guess"),
        ),
        (
            "too old",
            body.clone(),
            signature(&body, now() - 301, WEBHOOK_SECRET),
        ),
        ("no v1", body.clone(), format!("t={}", now())),
        (
            "another body",
            body.replace("52900", "52901"),
            signature(&body, now(), WEBHOOK_SECRET),
        ),
        (
            "a lower amount",
            cheap.clone(),
            signature(&cheap, now(), WEBHOOK_SECRET),
        ),
        (
            "an unknown order",
            unknown.clone(),
            signature(&unknown, now(), WEBHOOK_SECRET),
        ),
    ];
    let n = cases.len() as i64;
    for (what, body, sig) in cases {
        let res = deliver(&app, &body, &sig).await;
        assert_eq!(res.status(), 400, "{what}");
        assert_problem(res, 400).await;
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_notifications").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'payment_notification_refused'"
        )
        .await,
        n
    );
    // Without a signature header at all, too.
    let res = app
        .client
        .post(app.url("/api/payments/stripe/webhook"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;
    let sig = signature(&body, now(), WEBHOOK_SECRET);
    assert_eq!(result(deliver(&app, &body, &sig).await).await, "applied");
}

async fn a_deleted_stripe_subscription_ends_with_its_paid_period(backend: Backend) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let s = register_customer(&app).await;
    let order_id = checkout(&app, &s.access, pro_monthly(), "k1").await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = completed("evt_1", "cs_test_1", &order_id, 52900);
    result(deliver(&app, &body, &signature(&body, now(), WEBHOOK_SECRET)).await).await;
    let deleted = json!({
        "id": "evt_9", "type": "customer.subscription.deleted",
        "data": {"object": {"id": "sub_test_1", "object": "subscription", "metadata": {"order_id": order_id}}},
    })
    .to_string();
    let sig = signature(&deleted, now(), WEBHOOK_SECRET);
    assert_eq!(result(deliver(&app, &deleted, &sig).await).await, "applied");
    assert_eq!(
        result(deliver(&app, &deleted, &sig).await).await,
        "duplicate"
    );
    let sub = get_json(&app, "/api/billing/subscription", &s.access).await;
    assert_eq!(sub["status"], "canceled");
    assert_eq!(sub["cancel_at_period_end"], true);
}
