//! Per-account lockout: progressive delay, a temporary lock with Retry-After, an hourly cap.

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    ten_failures_lock_the_account_even_for_the_right_password_and_queue_an_email,
    a_successful_login_resets_the_failure_count,
    a_lock_ends_by_itself,
    no_more_than_a_hundred_failures_an_hour_are_accepted,
);

async fn fail(app: &TestApp, email: &str, times: usize) {
    for i in 0..times {
        let res = login(app, email, "definitely-the-wrong-one").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
}

async fn ten_failures_lock_the_account_even_for_the_right_password_and_queue_an_email(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    fail(&app, &s.email, 10).await;
    let res = login(&app, &s.email, PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=901).contains(&retry), "about 15 minutes: {retry}");
    assert_problem(res, 429).await;
    let mails = outbox(&app, "account_locked", &s.email).await;
    assert_eq!(mails.len(), 1, "one lock email");
    let actions = audit_actions(&app, &s.user_id).await;
    assert!(
        actions.contains(&("account_locked".into(), "success".into())),
        "{actions:?}"
    );
    // Another account is not affected.
    let other = register_customer(&app).await;
    login_ok(&app, &other.email, PASSWORD).await;
}

async fn a_successful_login_resets_the_failure_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    fail(&app, &s.email, 8).await;
    login_ok(&app, &s.email, PASSWORD).await;
    fail(&app, &s.email, 8).await;
    login_ok(&app, &s.email, PASSWORD).await;
}

async fn a_lock_ends_by_itself(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    fail(&app, &s.email, 10).await;
    assert_eq!(login(&app, &s.email, PASSWORD).await.status(), 429);
    // Fifteen minutes pass.
    let past = autorisen::db::types::now_micros() - 1;
    sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
        .bind(past)
        .bind(s.user_id.clone())
        .execute(app.state.db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE auth_guards SET locked_until = $1 WHERE subject = $2")
        .bind(past)
        .bind(format!("email:{}", s.email))
        .execute(app.state.db.pool())
        .await
        .unwrap();
    login_ok(&app, &s.email, PASSWORD).await;
}

async fn no_more_than_a_hundred_failures_an_hour_are_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let now = autorisen::db::types::now_micros();
    for i in 0..100i64 {
        sqlx::query(
            "INSERT INTO auth_failures (id, user_id, kind, at) VALUES ($1, $2, 'password', $3)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(s.user_id.clone())
        .bind(now - 3_000_000_000 + i)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    }
    let res = login(&app, &s.email, PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry <= 3600 - 2900,
        "until the oldest failure is an hour old: {retry}"
    );
    assert_problem(res, 429).await;
}
