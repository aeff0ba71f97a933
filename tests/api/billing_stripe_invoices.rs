//! Stripe renewals and failed renewals: signed `invoice.paid` and `invoice.payment_failed`
//! events, in the shapes Stripe sends (the subscription's metadata snapshotted on the invoice,
//! under `parent.subscription_details` since API 2025-03-31 and `subscription_details` before).

use serde_json::{json, Value};

use crate::{
    auth_helpers::*,
    billing_stripe::{
        checkout, completed, count, deliver, now, pro_monthly, result, signature,
        spawn_with_stripe, WEBHOOK_SECRET,
    },
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_paid_renewal_invoice_extends_the_period_once_per_invoice,
    the_first_invoice_of_a_subscription_is_applied_once_in_either_delivery_order,
    a_failed_renewal_is_past_due_until_an_invoice_is_paid,
    invoice_events_with_another_amount_order_or_subscription_are_refused_and_change_nothing,
);

const SUB: &str = "sub_test_1";

/// An invoice event as Stripe's current API sends it.
fn invoice_event(
    kind: &str,
    event: &str,
    invoice: &str,
    order: &str,
    reason: &str,
    amount: i64,
) -> Value {
    json!({
        "id": event, "object": "event", "type": kind, "api_version": "2025-03-31.basil",
        "data": {"object": {
            "id": invoice, "object": "invoice", "customer": "cus_test_1",
            "amount_due": amount, "amount_paid": if kind == "invoice.paid" { amount } else { 0 },
            "amount_remaining": if kind == "invoice.paid" { 0 } else { amount },
            "currency": "zar", "billing_reason": reason,
            "status": if kind == "invoice.paid" { "paid" } else { "open" },
            "attempt_count": 1,
            "parent": {
                "type": "subscription_details", "quote_details": null,
                "subscription_details": {"metadata": {"order_id": order}, "subscription": SUB},
            },
        }},
    })
}

/// The same invoice in the shape of API versions before 2025-03-31.
fn legacy(mut event: Value) -> Value {
    let object = event["data"]["object"].as_object_mut().unwrap();
    let details = object.remove("parent").unwrap()["subscription_details"].clone();
    object.insert("subscription".into(), details["subscription"].clone());
    object.insert(
        "subscription_details".into(),
        json!({"metadata": details["metadata"]}),
    );
    event
}

async fn send(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = event.to_string();
    deliver(app, &body, &signature(&body, now(), WEBHOOK_SECRET)).await
}

async fn subscription(app: &TestApp, token: &str) -> Value {
    get_json(app, "/api/billing/subscription", token).await
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// A customer with a paid Stripe pro subscription; their token and order id.
async fn subscribed(app: &TestApp) -> (Session, String) {
    let s = register_customer(app).await;
    let order_id = checkout(app, &s.access, pro_monthly(), "k1").await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = completed("evt_c", "cs_test_c", &order_id, 52900);
    let sig = signature(&body, now(), WEBHOOK_SECRET);
    assert_eq!(result(deliver(app, &body, &sig).await).await, "applied");
    (s, order_id)
}

async fn a_paid_renewal_invoice_extends_the_period_once_per_invoice(backend: Backend) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let (s, order_id) = subscribed(&app).await;
    let first = subscription(&app, &s.access).await;
    let end = at(&first["current_period_end"]);
    let renewal = invoice_event(
        "invoice.paid",
        "evt_r1",
        "in_r1",
        &order_id,
        "subscription_cycle",
        52900,
    );
    assert_eq!(result(send(&app, &renewal).await).await, "applied");
    let renewed = subscription(&app, &s.access).await;
    assert_eq!(renewed["plan"], "pro");
    assert_eq!(renewed["status"], "active");
    assert_eq!(at(&renewed["current_period_start"]), end);
    assert_eq!(
        at(&renewed["current_period_end"]),
        end.checked_add_months(chrono::Months::new(1)).unwrap()
    );
    let invoices = get_json(&app, "/api/billing/invoices", &s.access).await;
    assert_eq!(invoices["total"], 2);
    assert_eq!(invoices["items"][0]["provider_payment_id"], "in_r1");
    assert_eq!(invoices["items"][0]["amount_cents"], 52900);
    // Redelivered, also as a new event id or in the older shape: the invoice has one effect.
    let mut again = legacy(renewal.clone());
    again["id"] = json!("evt_r1_retry");
    for event in [&renewal, &again] {
        assert_eq!(result(send(&app, event).await).await, "duplicate");
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        2
    );
    let renewed_again = subscription(&app, &s.access).await;
    assert_eq!(
        renewed_again["current_period_end"],
        renewed["current_period_end"]
    );
    let check = app.admin_get("/api/admin/ledger/check").await;
    assert_eq!(check, json!({"transactions": 2, "unbalanced": 0}));
    // The next renewal, in the older shape, is another invoice.
    let next = legacy(invoice_event(
        "invoice.paid",
        "evt_r2",
        "in_r2",
        &order_id,
        "subscription_cycle",
        52900,
    ));
    assert_eq!(result(send(&app, &next).await).await, "applied");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        3
    );
}

async fn the_first_invoice_of_a_subscription_is_applied_once_in_either_delivery_order(
    backend: Backend,
) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    for (i, invoice_first) in [false, true].into_iter().enumerate() {
        let s = register_customer(&app).await;
        let order_id = checkout(&app, &s.access, pro_monthly(), "k1").await["order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let session = completed(
            &format!("evt_s{i}"),
            &format!("cs_test_{i}"),
            &order_id,
            52900,
        );
        let first_invoice = invoice_event(
            "invoice.paid",
            &format!("evt_i{i}"),
            &format!("in_first_{i}"),
            &order_id,
            "subscription_create",
            52900,
        );
        let session_sig = signature(&session, now(), WEBHOOK_SECRET);
        let answers = if invoice_first {
            let invoice = result(send(&app, &first_invoice).await).await;
            let session = result(deliver(&app, &session, &session_sig).await).await;
            (session, invoice)
        } else {
            let session = result(deliver(&app, &session, &session_sig).await).await;
            let invoice = result(send(&app, &first_invoice).await).await;
            (session, invoice)
        };
        assert_eq!(
            answers,
            ("applied".into(), "ignored".into()),
            "invoice first: {invoice_first}"
        );
        let invoices = get_json(&app, "/api/billing/invoices", &s.access).await;
        assert_eq!(invoices["total"], 1, "invoice first: {invoice_first}");
        let sub = subscription(&app, &s.access).await;
        assert_eq!(
            at(&sub["current_period_end"]),
            at(&sub["current_period_start"])
                .checked_add_months(chrono::Months::new(1))
                .unwrap(),
            "one month paid, invoice first: {invoice_first}"
        );
    }
}

async fn a_failed_renewal_is_past_due_until_an_invoice_is_paid(backend: Backend) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let (s, order_id) = subscribed(&app).await;
    let failed = legacy(invoice_event(
        "invoice.payment_failed",
        "evt_f1",
        "in_f1",
        &order_id,
        "subscription_cycle",
        52900,
    ));
    assert_eq!(result(send(&app, &failed).await).await, "applied");
    let sub = subscription(&app, &s.access).await;
    assert_eq!(
        (sub["plan"].as_str(), sub["status"].as_str()),
        (Some("pro"), Some("past_due"))
    );
    // Stripe tries again and tells again: once per invoice.
    let mut retried = failed.clone();
    retried["id"] = json!("evt_f1_second_attempt");
    assert_eq!(result(send(&app, &retried).await).await, "duplicate");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'subscription_past_due'"
        )
        .await,
        1
    );
    let paid = invoice_event(
        "invoice.paid",
        "evt_p1",
        "in_f1",
        &order_id,
        "subscription_cycle",
        52900,
    );
    assert_eq!(result(send(&app, &paid).await).await, "applied");
    let sub = subscription(&app, &s.access).await;
    assert_eq!(sub["status"], "active");
    // A failure notice that arrives after its invoice was paid changes nothing.
    let late_paid = invoice_event(
        "invoice.paid",
        "evt_p2",
        "in_f2",
        &order_id,
        "subscription_cycle",
        52900,
    );
    assert_eq!(result(send(&app, &late_paid).await).await, "applied");
    let late_failed = invoice_event(
        "invoice.payment_failed",
        "evt_f2",
        "in_f2",
        &order_id,
        "subscription_cycle",
        52900,
    );
    assert_eq!(result(send(&app, &late_failed).await).await, "ignored");
    assert_eq!(subscription(&app, &s.access).await["status"], "active");
    // The first invoice failing (the checkout was not paid) has nothing to make past due.
    let other = register_customer(&app).await;
    let pending = checkout(&app, &other.access, pro_monthly(), "k2").await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_failed = invoice_event(
        "invoice.payment_failed",
        "evt_f3",
        "in_f3",
        &pending,
        "subscription_create",
        52900,
    );
    assert_eq!(result(send(&app, &first_failed).await).await, "ignored");
    assert_eq!(subscription(&app, &other.access).await["plan"], "free");
    // An invoice of no subscription (one made by hand in Stripe's dashboard) is none of ours.
    let mut by_hand = invoice_event("invoice.paid", "evt_m", "in_m", &order_id, "manual", 52900);
    by_hand["data"]["object"]["parent"] = Value::Null;
    assert_eq!(result(send(&app, &by_hand).await).await, "ignored");
    assert_eq!(subscription(&app, &s.access).await["status"], "active");
}

async fn invoice_events_with_another_amount_order_or_subscription_are_refused_and_change_nothing(
    backend: Backend,
) {
    let (app, _seen) = spawn_with_stripe(backend).await;
    let (s, order_id) = subscribed(&app).await;
    let before = subscription(&app, &s.access).await;
    let renewal = |event: &str| {
        invoice_event(
            "invoice.paid",
            event,
            &format!("in_{event}"),
            &order_id,
            "subscription_cycle",
            52900,
        )
    };
    let mut cheaper = renewal("a");
    cheaper["data"]["object"]["amount_paid"] = json!(100);
    let mut dollars = renewal("b");
    dollars["data"]["object"]["currency"] = json!("usd");
    let mut unknown = renewal("c");
    unknown["data"]["object"]["parent"]["subscription_details"]["metadata"]["order_id"] =
        json!(uuid::Uuid::now_v7().to_string());
    let mut no_order = renewal("d");
    no_order["data"]["object"]["parent"]["subscription_details"]["metadata"] = json!({});
    let mut other_subscription = renewal("e");
    other_subscription["data"]["object"]["parent"]["subscription_details"]["subscription"] =
        json!("sub_someone_else");
    let mut failed_elsewhere = other_subscription.clone();
    failed_elsewhere["type"] = json!("invoice.payment_failed");
    failed_elsewhere["id"] = json!("evt_f");
    failed_elsewhere["data"]["object"]["id"] = json!("in_f");
    let mut not_an_invoice = renewal("g");
    not_an_invoice["data"]["object"]["id"] = json!("cs_test_x");
    let cases = [
        cheaper,
        dollars,
        unknown,
        no_order,
        other_subscription,
        failed_elsewhere,
        not_an_invoice,
    ];
    let n = cases.len() as i64;
    for event in &cases {
        let res = send(&app, event).await;
        let problem = assert_problem(res, 400).await;
        assert!(problem["detail"].is_string(), "{event}");
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_invoices").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM billing_notifications").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'payment_notification_refused'"
        )
        .await,
        n
    );
    let reasons = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'payment_notification_refused' \
         AND details LIKE '%token_mismatch%'",
    )
    .await;
    assert_eq!(reasons, 2, "another subscription is refused for its token");
    assert_eq!(subscription(&app, &s.access).await, before);
}
