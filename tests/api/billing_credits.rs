//! Spending credit: the service pay-per-run domains call (`billing::credits`), against a real
//! app and database, with the balance read over HTTP (`GET /api/billing/credits`). No route
//! spends credit yet (the marketplace comes later).

use autorisen::domains::billing::credits::{self, SpendError};
use serde_json::{json, Value};

use crate::{
    auth_helpers::*,
    billing::{itn, itn_result, order, post_itn, spawn_with_payfast},
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_spend_in_a_transaction_that_rolls_back_spends_nothing,
    forty_concurrent_spends_never_take_the_balance_below_zero,
    a_spend_over_the_balance_is_refused_and_changes_nothing,
);

/// A customer with one small pack (10,000 credit cents) paid through PayFast.
async fn customer_with_credit(app: &TestApp) -> Session {
    let s = register_customer(app).await;
    let body = json!({"kind": "credits", "pack": "small", "provider": "payfast"});
    let id = order(app, &s.access, body).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = post_itn(
        app,
        itn(&id, &format!("c{}", &id[..8]), "100.00", "COMPLETE"),
    )
    .await;
    assert_eq!(itn_result(paid).await, "applied");
    s
}

async fn credits(app: &TestApp, s: &Session) -> Value {
    get_json(app, "/api/billing/credits", &s.access).await
}

async fn a_spend_in_a_transaction_that_rolls_back_spends_nothing(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = customer_with_credit(&app).await;
    let mut tx = app.state.db.begin().await.unwrap();
    let left = credits::spend_in(&app.state, &mut tx, &s.user_id, 2500, "Agent run", "run-1")
        .await
        .unwrap();
    assert_eq!(left, 7500);
    tx.rollback().await.unwrap();
    assert_eq!(credits(&app, &s).await["balance_cents"], 10000);
    let left = credits::spend(&app.state, &s.user_id, 2500, "Agent run", "run-2")
        .await
        .unwrap();
    assert_eq!(left, 7500);
    let view = credits(&app, &s).await;
    assert_eq!(view["balance_cents"], 7500, "{view}");
    let spent = &view["transactions"][0];
    assert_eq!(
        (
            &spent["kind"],
            &spent["amount_cents"],
            &spent["description"]
        ),
        (&json!("credit_spend"), &json!(-2500), &json!("Agent run")),
        "{view}"
    );
    assert_eq!(
        app.admin_get("/api/admin/ledger/check").await,
        json!({"transactions": 2, "unbalanced": 0})
    );
}

async fn forty_concurrent_spends_never_take_the_balance_below_zero(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = customer_with_credit(&app).await;
    let spends = (0..40).map(|i| {
        let (state, user) = (&app.state, &s.user_id);
        async move { credits::spend(state, user, 1000, "Agent run", &format!("run-{i}")).await }
    });
    let results = futures::future::join_all(spends).await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(SpendError::Insufficient { needed: 1000, .. })))
        .count();
    assert_eq!((granted, refused), (10, 30), "{results:?}");
    assert_eq!(credits(&app, &s).await["balance_cents"], 0);
    assert_eq!(
        app.admin_get("/api/admin/ledger/check").await,
        json!({"transactions": 11, "unbalanced": 0})
    );
}

async fn a_spend_over_the_balance_is_refused_and_changes_nothing(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let s = customer_with_credit(&app).await;
    let refused = credits::spend(&app.state, &s.user_id, 10001, "Agent run", "run-1").await;
    assert!(
        matches!(
            refused,
            Err(SpendError::Insufficient {
                balance: 10000,
                needed: 10001
            })
        ),
        "{refused:?}"
    );
    let nobody = register_customer(&app).await;
    let refused = credits::spend(&app.state, &nobody.user_id, 1, "Agent run", "run-2").await;
    assert!(matches!(
        refused,
        Err(SpendError::Insufficient { balance: 0, .. })
    ));
    assert_eq!(credits(&app, &s).await["balance_cents"], 10000);
    assert_eq!(credits(&app, &nobody).await["balance_cents"], 0);
    assert_eq!(
        app.admin_get("/api/admin/ledger/check").await,
        json!({"transactions": 1, "unbalanced": 0})
    );
}
