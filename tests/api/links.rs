//! Password reset and email verification through links queued in the mail outbox.

use serde_json::{json, Value};

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_reset_request_answers_the_same_whether_or_not_the_account_exists,
    a_reset_link_sets_a_new_password_once_and_ends_every_session,
    an_expired_reset_token_is_refused,
    a_weak_new_password_is_422_and_leaves_the_reset_link_usable,
    the_verification_link_confirms_the_email_once,
    a_new_verification_link_can_be_requested_until_verified,
    a_reset_token_cannot_verify_an_email,
    a_password_change_retires_open_reset_links,
    a_reset_link_does_nothing_for_a_deactivated_account,
);

async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/api/auth/password-reset/request", &json!({"email": email}))
        .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/auth/password-reset/confirm",
        &json!({"token": token, "new_password": password}),
    )
    .await
}

async fn a_reset_request_answers_the_same_whether_or_not_the_account_exists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let known = request_reset(&app, &s.email).await;
    assert_eq!(known.status(), 202);
    let known: Value = known.json().await.unwrap();
    let unknown = request_reset(&app, "ghost@example.com").await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(known, unknown.json::<Value>().await.unwrap());
    let invalid = request_reset(&app, "not an email").await;
    assert_eq!(invalid.status(), 202);
    assert_eq!(outbox(&app, "password_reset", &s.email).await.len(), 1);
    assert!(outbox(&app, "password_reset", "ghost@example.com")
        .await
        .is_empty());
    let link = outbox(&app, "password_reset", &s.email).await[0]["link"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.contains("/auth/reset-password?token="), "{link}");
}

async fn a_reset_link_sets_a_new_password_once_and_ends_every_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let token = token_from_outbox(&app, "password_reset", &s.email).await;
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );
    assert_problem(get_authed(&app, "/api/auth/me", &s.access).await, 401).await;
    assert_problem(login(&app, &s.email, PASSWORD).await, 401).await;
    login_ok(&app, &s.email, NEW_PASSWORD).await;
    let again = confirm_reset(&app, &token, "yet-another-fine-passphrase-9").await;
    assert_problem(again, 401).await;
    assert_eq!(outbox(&app, "password_changed", &s.email).await.len(), 1);
    let actions = audit_actions(&app, &s.user_id).await;
    assert!(actions.contains(&("password_reset".into(), "success".into())));
}

async fn an_expired_reset_token_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let token = token_from_outbox(&app, "password_reset", &s.email).await;
    sqlx::query("UPDATE user_tokens SET expires_at = $1 WHERE purpose = 'password_reset'")
        .bind(autorisen::db::types::now_micros() - 1)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_problem(confirm_reset(&app, &token, NEW_PASSWORD).await, 401).await;
    login_ok(&app, &s.email, PASSWORD).await;
}

async fn a_weak_new_password_is_422_and_leaves_the_reset_link_usable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let token = token_from_outbox(&app, "password_reset", &s.email).await;
    let res = confirm_reset(&app, &token, "password1234").await;
    assert_eq!(
        assert_problem(res, 422).await["errors"][0]["field"],
        "new_password"
    );
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );
}

async fn the_verification_link_confirms_the_email_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let token = token_from_outbox(&app, "verify_email", &s.email).await;
    let res = app
        .post_json("/api/auth/verify-email/confirm", &json!({"token": token}))
        .await;
    assert_eq!(res.status(), 204);
    let me: Value = get_authed(&app, "/api/auth/me", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    let res = app
        .post_json("/api/auth/verify-email/confirm", &json!({"token": token}))
        .await;
    assert_problem(res, 401).await;
    let res = post_authed(
        &app,
        "/api/auth/verify-email/request",
        &s.access,
        &json!({}),
    )
    .await;
    assert_problem(res, 409).await;
}

async fn a_new_verification_link_can_be_requested_until_verified(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let first = token_from_outbox(&app, "verify_email", &s.email).await;
    a_minute_passes_for_mail(&app, "verify_email", &s.email).await;
    let res = post_authed(
        &app,
        "/api/auth/verify-email/request",
        &s.access,
        &json!({}),
    )
    .await;
    assert_eq!(res.status(), 202);
    assert_eq!(outbox(&app, "verify_email", &s.email).await.len(), 2);
    let res = app
        .post_json("/api/auth/verify-email/confirm", &json!({"token": first}))
        .await;
    assert_problem(res, 401).await;
    let second = token_from_outbox(&app, "verify_email", &s.email).await;
    let res = app
        .post_json("/api/auth/verify-email/confirm", &json!({"token": second}))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.post_json("/api/auth/verify-email/request", &json!({}))
            .await,
        401,
    )
    .await;
}

async fn a_reset_token_cannot_verify_an_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let reset = token_from_outbox(&app, "password_reset", &s.email).await;
    let res = app
        .post_json("/api/auth/verify-email/confirm", &json!({"token": reset}))
        .await;
    assert_problem(res, 401).await;
    let verify = token_from_outbox(&app, "verify_email", &s.email).await;
    assert_problem(confirm_reset(&app, &verify, NEW_PASSWORD).await, 401).await;
}

/// Regression (security review): a link sent before a password change could change it again.
async fn a_password_change_retires_open_reset_links(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let token = token_from_outbox(&app, "password_reset", &s.email).await;
    let changed = post_authed(
        &app,
        "/api/auth/change-password",
        &s.access,
        &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(changed.status(), 204);
    let stale = confirm_reset(&app, &token, "another-quiet-harbor-lantern-93").await;
    assert!(stale.status().is_client_error(), "{}", stale.status());
    assert_eq!(login(&app, &s.email, NEW_PASSWORD).await.status(), 200);
}

/// Regression (security review): a reset link still worked on a deactivated account.
async fn a_reset_link_does_nothing_for_a_deactivated_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    request_reset(&app, &s.email).await;
    let token = token_from_outbox(&app, "password_reset", &s.email).await;
    let admin = app.admin_token().await;
    let off = authed(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/admin/users/{}", s.user_id),
        &admin,
    )
    .json(&json!({"is_active": false}))
    .send()
    .await
    .unwrap();
    assert_eq!(off.status(), 200);
    let res = confirm_reset(&app, &token, "another-quiet-harbor-lantern-93").await;
    assert!(res.status().is_client_error(), "{}", res.status());
}
