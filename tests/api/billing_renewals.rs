//! Renewals: a PayFast renewal must name the subscription token its order was paid with, and the
//! scheduled job reminds a yearly renewal three days ahead, once per period.

use std::time::Duration;

use autorisen::{
    app::App,
    domains::billing::reminders::{self, RENEWAL_REMINDERS},
};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    auth_helpers::*,
    billing::{
        itn, itn_result, itn_signed, order, post_itn, pro_monthly, spawn_with_payfast,
        subscription, MERCHANT_ID, PASSPHRASE,
    },
    helpers::{assert_problem, base_vars, config_from, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_renewal_itn_with_another_subscription_token_is_refused_and_changes_nothing,
    a_yearly_renewal_is_reminded_once_three_days_ahead_by_the_scheduled_job,
);

const TOKEN: &str = "dc0521d3-55fe-269b-fa00-b647310d760f";
const DAY: i64 = 86_400_000_000;

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

fn pro_yearly() -> Value {
    json!({"kind": "subscription", "plan": "pro", "cycle": "yearly", "provider": "payfast"})
}

/// A customer paid up on `plan` (a checkout body) through an ITN; their session.
async fn paid(app: &TestApp, plan: Value, amount: &str, pf_payment_id: &str) -> (Session, String) {
    let s = register_customer(app).await;
    let order_id = order(app, &s.access, plan).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_itn(app, itn(&order_id, pf_payment_id, amount, "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    (s, order_id)
}

/// Moves the end of `user`'s paid period to `micros`.
async fn ends_at(app: &TestApp, user: &str, micros: i64) {
    sqlx::query("UPDATE billing_subscriptions SET current_period_end = $1 WHERE user_id = $2")
        .bind(micros)
        .bind(user.to_owned())
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// Waits (at most 15 s) until no reminder job is queued or running, and every one ended done.
async fn reminder_jobs_done(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let sql = "SELECT COUNT(*) FROM jobs WHERE kind = 'billing.renewal_reminders' \
                   AND state <> 'done'";
        if count(app, sql).await == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reminder jobs never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reminders_sent(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM mail_outbox WHERE template = 'billing_renewal_reminder'",
    )
    .await
}

async fn a_yearly_renewal_is_reminded_once_three_days_ahead_by_the_scheduled_job(backend: Backend) {
    let (app, _fake) = spawn_with_payfast(backend, &[]).await;
    let now = chrono::Utc::now().timestamp_micros();
    let (yearly, yearly_order) = paid(&app, pro_yearly(), "4990.00", "9501").await;
    ends_at(&app, &yearly.user_id, now + 2 * DAY).await;
    // Not reminded: a monthly plan, a yearly one set to end, one renewing in ten days.
    let (monthly, _) = paid(&app, pro_monthly(), "529.00", "9502").await;
    ends_at(&app, &monthly.user_id, now + 2 * DAY).await;
    let (ending, _) = paid(&app, pro_yearly(), "4990.00", "9503").await;
    let res = authed(
        &app,
        Method::POST,
        "/api/billing/subscription/cancel",
        &ending.access,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    ends_at(&app, &ending.user_id, now + 2 * DAY).await;
    let (later, _) = paid(&app, pro_yearly(), "4990.00", "9504").await;
    ends_at(&app, &later.user_id, now + 10 * DAY).await;

    // The schedule's job run three times by this instance's runner (a retry, the next hour) while
    // a second instance on the same database runs the reminders too.
    let mut vars = base_vars(&app.db);
    vars.insert(
        "PUBLIC_BASE_URL".into(),
        "https://capecontrol.example".into(),
    );
    let second = App::build(config_from(&vars))
        .await
        .expect("second instance");
    let second_state = second.state().clone();
    let (a, b, c, d) = tokio::join!(
        app.state.jobs.run_schedule_now(RENEWAL_REMINDERS),
        app.state.jobs.run_schedule_now(RENEWAL_REMINDERS),
        app.state.jobs.run_schedule_now(RENEWAL_REMINDERS),
        reminders::send_due(&second_state),
    );
    for job in [a, b, c] {
        job.unwrap();
    }
    d.unwrap();
    reminder_jobs_done(&app).await;
    assert_eq!(reminders_sent(&app).await, 1);
    let sent = outbox(&app, "billing_renewal_reminder", &yearly.email).await;
    assert_eq!(sent.len(), 1);
    let renews_on = chrono::DateTime::from_timestamp_micros(now + 2 * DAY)
        .unwrap()
        .format("%-d %B %Y")
        .to_string();
    assert_eq!(
        sent[0]["subject"],
        format!("Your CapeControl Pro plan renews on {renews_on}")
    );
    let text = sent[0]["text"].as_str().unwrap();
    assert!(text.contains("R4990.00"), "{text}");
    assert!(
        text.contains("https://capecontrol.example/billing"),
        "{text}"
    );

    // Renewed for a year, the next period is reminded once too.
    let res = post_itn(&app, itn(&yearly_order, "9505", "4990.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    app.state
        .jobs
        .run_schedule_now(RENEWAL_REMINDERS)
        .await
        .unwrap();
    reminder_jobs_done(&app).await;
    assert_eq!(
        reminders_sent(&app).await,
        1,
        "the new period is a year away"
    );
    ends_at(&app, &yearly.user_id, now + 3 * DAY - 60_000_000).await;
    app.state
        .jobs
        .run_schedule_now(RENEWAL_REMINDERS)
        .await
        .unwrap();
    app.state
        .jobs
        .run_schedule_now(RENEWAL_REMINDERS)
        .await
        .unwrap();
    reminder_jobs_done(&app).await;
    assert_eq!(reminders_sent(&app).await, 2);
    assert_eq!(
        outbox(&app, "billing_renewal_reminder", &yearly.email)
            .await
            .len(),
        2
    );
    // The schedule is declared: hourly, for admins to see and run.
    let schedules = app.admin_get("/api/admin/jobs/schedules").await;
    let declared = schedules["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == RENEWAL_REMINDERS)
        .cloned();
    assert!(
        declared.is_some_and(|s| s["kind"] == RENEWAL_REMINDERS && s["every"] == "every 3600s"),
        "{schedules}"
    );
}
