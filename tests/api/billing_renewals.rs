//! Renewals: a PayFast renewal must name the subscription token its order was paid with.

use sqlx::Row;

use crate::{
    auth_helpers::*,
    billing::{
        itn, itn_result, itn_signed, order, post_itn, pro_monthly, spawn_with_payfast,
        subscription, MERCHANT_ID, PASSPHRASE,
    },
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_renewal_itn_with_another_subscription_token_is_refused_and_changes_nothing,
);

const TOKEN: &str = "dc0521d3-55fe-269b-fa00-b647310d760f";

/// A COMPLETE notification naming `token` (none when `None`).
fn itn_with_token(
    order_id: &str,
    pf_payment_id: &str,
    amount: &str,
    token: Option<&str>,
) -> String {
    let mut fields = vec![
        ("m_payment_id", order_id),
        ("pf_payment_id", pf_payment_id),
        ("payment_status", "COMPLETE"),
        ("item_name", "CapeControl Pro (monthly)"),
        ("amount_gross", amount),
        ("merchant_id", MERCHANT_ID),
    ];
    if let Some(token) = token {
        fields.push(("token", token));
    }
    itn_signed(&fields, PASSPHRASE)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn a_renewal_itn_with_another_subscription_token_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = register_customer(&app).await;
    let order_id = order(&app, &s.access, pro_monthly()).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_itn(&app, itn(&order_id, "8101", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let before = subscription(&app, &s.access).await;
    for (pf_payment_id, token) in [("8102", Some("another-token")), ("8103", None)] {
        let res = post_itn(
            &app,
            itn_with_token(&order_id, pf_payment_id, "529.00", token),
        )
        .await;
        let problem = assert_problem(res, 400).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("token"),
            "{problem}"
        );
    }
    assert_eq!(subscription(&app, &s.access).await, before);
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
            "SELECT COUNT(*) FROM audit_events WHERE action = 'payment_notification_refused' \
             AND details LIKE '%token_mismatch%'"
        )
        .await,
        2
    );
    // The renewal naming the order's own token is applied.
    let res = post_itn(
        &app,
        itn_with_token(&order_id, "8104", "529.00", Some(TOKEN)),
    )
    .await;
    assert_eq!(itn_result(res).await, "applied");
    // A new order is a new subscription, with a token of its own.
    let second = order(&app, &s.access, pro_monthly()).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_itn(
        &app,
        itn_with_token(&second, "8105", "529.00", Some("second-token")),
    )
    .await;
    assert_eq!(itn_result(res).await, "applied");
}
