//! The production web client's routes behave like the canonical ones.

use serde_json::{json, Value};

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    v2_register_accepts_full_name_user_role_and_company_name,
    v2_register_refuses_what_register_refuses,
    v2_login_answers_like_login,
    v2_logout_and_logout_all_end_sessions_like_the_canonical_routes,
    user_profile_answers_like_me,
    validate_email_tells_invalid_taken_and_available_addresses,
    validate_password_rates_with_the_registration_policy,
);

async fn v2_register_accepts_full_name_user_role_and_company_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post_json("/api/auth/v2/register", &json!({"email": "lindiwe@example.com", "password": PASSWORD, "full_name": "Lindiwe van der Merwe", "user_role": "client", "company_name": "Kaap Agri"}))
        .await;
    assert_eq!(res.status(), 201);
    let s = session_from(res).await;
    let user = &s.body["user"];
    assert_eq!(user["first_name"], "Lindiwe");
    assert_eq!(user["last_name"], "van der Merwe");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["profile"]["company_name"], "Kaap Agri");
    assert_eq!(outbox(&app, "verify_email", &s.email).await.len(), 1);
}

async fn v2_register_refuses_what_register_refuses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let base = |role: &str| json!({"email": unique_email("v2"), "password": PASSWORD, "full_name": "Eve Attacker", "user_role": role});
    assert_problem(
        app.post_json("/api/auth/v2/register", &base("admin")).await,
        422,
    )
    .await;
    let mut weak = base("developer");
    weak["password"] = json!("password1234");
    assert_problem(app.post_json("/api/auth/v2/register", &weak).await, 422).await;
    let mut extra = base("developer");
    extra["is_admin"] = json!(true);
    assert_problem(app.post_json("/api/auth/v2/register", &extra).await, 422).await;
    let body = assert_problem(
        app.post_json(
            "/api/auth/v2/register",
            &json!({"email": unique_email("v2"), "password": PASSWORD, "full_name": " "}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "full_name", "{body}");
    register_as(&app, "taken@example.com", "customer").await;
    let mut dup = base("client");
    dup["email"] = json!("taken@example.com");
    assert_problem(app.post_json("/api/auth/v2/register", &dup).await, 409).await;
}

async fn v2_login_answers_like_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let res = app
        .post_json(
            "/api/auth/v2/login",
            &json!({"email": s.email, "password": PASSWORD}),
        )
        .await;
    let v2 = session_from(res).await;
    assert_eq!(v2.user_id, s.user_id);
    assert_eq!(v2.body["token_type"], "bearer");
    let wrong = app
        .post_json(
            "/api/auth/v2/login",
            &json!({"email": s.email, "password": "wrong-password-here"}),
        )
        .await;
    let canonical = login(&app, &s.email, "wrong-password-here").await;
    let (a, b) = (
        assert_problem(wrong, 401).await,
        assert_problem(canonical, 401).await,
    );
    assert_eq!(a["detail"], b["detail"]);
}

async fn v2_logout_and_logout_all_end_sessions_like_the_canonical_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let other = login_ok(&app, &s.email, PASSWORD).await;
    assert_eq!(
        post_authed(&app, "/api/auth/v2/logout", &s.access, &json!({}))
            .await
            .status(),
        204
    );
    assert_problem(get_authed(&app, "/api/auth/me", &s.access).await, 401).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &other.access)
            .await
            .status(),
        200
    );
    let third = login_ok(&app, &s.email, PASSWORD).await;
    assert_eq!(
        post_authed(&app, "/api/auth/v2/logout-all", &third.access, &json!({}))
            .await
            .status(),
        204
    );
    assert_problem(get_authed(&app, "/api/auth/me", &other.access).await, 401).await;
    assert_problem(app.post_json("/api/auth/v2/logout", &json!({})).await, 401).await;
}

async fn user_profile_answers_like_me(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_developer(&app).await;
    let me: Value = get_authed(&app, "/api/auth/me", &s.access)
        .await
        .json()
        .await
        .unwrap();
    let profile: Value = get_authed(&app, "/api/user/profile", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, profile);
    assert_problem(app.get("/api/user/profile").await, 401).await;
}

async fn validate_email_tells_invalid_taken_and_available_addresses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_as(&app, "taken@example.com", "customer").await;
    let check = |email: &'static str| {
        let url = app.url(&format!("/api/auth/v2/validate-email?email={email}"));
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        check("TAKEN@example.com").await,
        json!({"available": false, "reason": "already_exists"})
    );
    assert_eq!(check("free@example.com").await, json!({"available": true}));
    assert_eq!(
        check("nope").await,
        json!({"available": false, "reason": "invalid_format"})
    );
    assert_eq!(app.get("/api/auth/v2/validate-email").await.status(), 422);
}

async fn validate_password_rates_with_the_registration_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let weak: Value = app
        .post_json(
            "/api/auth/v2/validate-password",
            &json!({"password": "capecontrol123"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(weak["valid"], false);
    assert!(!weak["problems"].as_array().unwrap().is_empty());
    let strong: Value = app
        .post_json(
            "/api/auth/v2/validate-password",
            &json!({"password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(strong["valid"], true, "{strong}");
    assert!(strong["score"].as_u64().unwrap() >= 3);
    assert_eq!(strong["problems"], json!([]));
}
