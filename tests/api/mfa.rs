//! TOTP multi-factor authentication and recovery codes.

use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    enabling_mfa_needs_the_password_so_a_stolen_access_token_cannot_add_a_factor,
    a_right_password_does_not_reset_the_count_of_wrong_mfa_codes,
    enabling_mfa_needs_a_right_code_and_answers_ten_recovery_codes,
    a_login_with_mfa_needs_a_code_and_each_totp_code_works_once,
    a_recovery_code_completes_a_login_once,
    wrong_codes_lock_the_account_like_wrong_passwords,
    an_mfa_step_token_is_not_an_access_token,
    disabling_mfa_needs_the_password_and_a_code,
);

/// The code of `secret` at now + `offset` seconds.
pub fn code(secret: &str, offset: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "test".into()).unwrap();
    totp.generate((chrono::Utc::now().timestamp() + offset) as u64)
}

/// Registers a user and turns MFA on; returns the session, the secret and the recovery codes.
pub async fn with_mfa(app: &TestApp) -> (Session, String, Vec<String>) {
    let s = register_customer(app).await;
    let setup: Value = post_authed(app, "/api/auth/mfa/setup", &s.access, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let res = post_authed(
        app,
        "/api/auth/mfa/enable",
        &s.access,
        &json!({"password": PASSWORD, "code": code(&secret, 0)}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (s, secret, codes)
}

pub async fn mfa_token(app: &TestApp, email: &str) -> String {
    let body: Value = login(app, email, PASSWORD).await.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none());
    body["mfa_token"].as_str().unwrap().to_owned()
}

pub async fn verify(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/api/auth/mfa/verify",
        &json!({"mfa_token": token, "code": code}),
    )
    .await
}

async fn enabling_mfa_needs_a_right_code_and_answers_ten_recovery_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    assert_problem(
        post_authed(
            &app,
            "/api/auth/mfa/enable",
            &s.access,
            &json!({"password": PASSWORD, "code": "123456"}),
        )
        .await,
        409,
    )
    .await;
    let setup: Value = post_authed(&app, "/api/auth/mfa/setup", &s.access, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        setup["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/CapeControl"),
        "{setup}"
    );
    let secret = setup["secret"].as_str().unwrap();
    let wrong = if code(secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_problem(
        post_authed(
            &app,
            "/api/auth/mfa/enable",
            &s.access,
            &json!({"password": PASSWORD, "code": wrong}),
        )
        .await,
        401,
    )
    .await;
    let res = post_authed(
        &app,
        "/api/auth/mfa/enable",
        &s.access,
        &json!({"password": PASSWORD, "code": code(secret, 0)}),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    let codes = body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let me: Value = get_authed(&app, "/api/auth/me", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], true);
    assert_problem(
        post_authed(&app, "/api/auth/mfa/setup", &s.access, &json!({})).await,
        409,
    )
    .await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM recovery_codes")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert!(
        !stored
            .iter()
            .any(|h| codes.iter().any(|c| h.contains(c.as_str().unwrap()))),
        "codes are stored hashed"
    );
}

async fn a_login_with_mfa_needs_a_code_and_each_totp_code_works_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, secret, _) = with_mfa(&app).await;
    let token = mfa_token(&app, &s.email).await;
    let next = code(&secret, 30);
    let res = verify(&app, &token, &next).await;
    let done = session_from(res).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &done.access)
            .await
            .status(),
        200
    );
    let token = mfa_token(&app, &s.email).await;
    assert_problem(verify(&app, &token, &next).await, 401).await;
}

async fn a_recovery_code_completes_a_login_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, _, codes) = with_mfa(&app).await;
    let token = mfa_token(&app, &s.email).await;
    session_from(verify(&app, &token, &codes[3].to_uppercase()).await).await;
    let again = mfa_token(&app, &s.email).await;
    assert_problem(verify(&app, &again, &codes[3]).await, 401).await;
    session_from(verify(&app, &again, &codes[4]).await).await;
}

async fn wrong_codes_lock_the_account_like_wrong_passwords(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, secret, _) = with_mfa(&app).await;
    let token = mfa_token(&app, &s.email).await;
    for _ in 0..10 {
        assert_problem(verify(&app, &token, "not-a-recovery-code").await, 401).await;
    }
    let res = verify(&app, &token, &code(&secret, 30)).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429).await;
    assert_problem(login(&app, &s.email, PASSWORD).await, 429).await;
    assert_eq!(outbox(&app, "account_locked", &s.email).await.len(), 1);
}

async fn an_mfa_step_token_is_not_an_access_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, secret, _) = with_mfa(&app).await;
    let token = mfa_token(&app, &s.email).await;
    assert_problem(get_authed(&app, "/api/auth/me", &token).await, 401).await;
    assert_problem(verify(&app, &s.access, &code(&secret, 30)).await, 401).await;
}

async fn disabling_mfa_needs_the_password_and_a_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, _, codes) = with_mfa(&app).await;
    let res = post_authed(
        &app,
        "/api/auth/mfa/disable",
        &s.access,
        &json!({"password": "wrong-password-here", "code": codes[0]}),
    )
    .await;
    assert_problem(res, 403).await;
    let res = post_authed(
        &app,
        "/api/auth/mfa/disable",
        &s.access,
        &json!({"password": PASSWORD, "code": "bad-code"}),
    )
    .await;
    assert_problem(res, 401).await;
    let res = post_authed(
        &app,
        "/api/auth/mfa/disable",
        &s.access,
        &json!({"password": PASSWORD, "code": codes[0]}),
    )
    .await;
    assert_eq!(res.status(), 204);
    login_ok(&app, &s.email, PASSWORD).await;
    let actions = audit_actions(&app, &s.user_id).await;
    assert!(actions.contains(&("mfa_enabled".into(), "success".into())));
    assert!(actions.contains(&("mfa_disabled".into(), "success".into())));
}

/// Regression (security review): with only an access token, an attacker could enrol an
/// authenticator of their own and lock the owner out.
async fn enabling_mfa_needs_the_password_so_a_stolen_access_token_cannot_add_a_factor(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let setup: Value = post_authed(&app, "/api/auth/mfa/setup", &s.access, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap();
    let without = post_authed(
        &app,
        "/api/auth/mfa/enable",
        &s.access,
        &json!({"code": code(secret, 0)}),
    )
    .await;
    assert_problem(without, 422).await;
    let wrong = post_authed(
        &app,
        "/api/auth/mfa/enable",
        &s.access,
        &json!({"password": "not-the-password-at-all", "code": code(secret, 0)}),
    )
    .await;
    let body = assert_problem(wrong, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("password"),
        "{body}"
    );
    let me: Value = get_authed(&app, "/api/auth/me", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], false, "MFA stays off");
}

/// Regression (security review): the password step reset the failure count, so someone with the
/// password could try nine codes, log in again, and never be locked out.
async fn a_right_password_does_not_reset_the_count_of_wrong_mfa_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, secret, _) = with_mfa(&app).await;
    let wrong = if code(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..10 {
        let token = mfa_token(&app, &s.email).await;
        assert_eq!(verify(&app, &token, wrong).await.status(), 401);
    }
    let locked = login(&app, &s.email, PASSWORD).await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_problem(locked, 429).await;
}
