//! Registration, login, tokens, /me and the audit trail.

use reqwest::Method;
use serde_json::json;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    registering_a_customer_answers_201_with_tokens_the_user_and_a_verification_email,
    registering_a_taken_email_in_any_case_is_409,
    registering_as_admin_or_an_unknown_role_is_422,
    registration_lists_every_invalid_field_and_says_why_a_password_is_weak,
    client_and_user_are_aliases_for_customer_and_developer_is_accepted,
    text_with_control_characters_is_refused_and_names_are_nfc_normalised,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    me_answers_the_signed_in_user_and_anonymous_calls_are_401,
    a_forged_expired_or_mistyped_token_is_refused,
    patch_me_updates_names_and_profile_fields,
    patch_me_refuses_role_email_is_active_id_and_unknown_fields,
    developer_me_is_for_developers_only,
    the_audit_trail_records_register_and_logins_without_secrets,
);

async fn registering_a_customer_answers_201_with_tokens_the_user_and_a_verification_email(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post_json("/api/auth/register", &json!({"email": "Thandi@Example.COM", "password": PASSWORD, "first_name": "Thandi", "last_name": "Mokoena", "profile": {"company_name": "Acme"}}))
        .await;
    assert_eq!(res.status(), 201);
    let cookie = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/api/auth"),
        "{cookie}"
    );
    let s = session_from(res).await;
    assert_eq!(s.email, "thandi@example.com");
    assert_eq!(s.body["token_type"], "bearer");
    assert_eq!(s.body["expires_in"], 900);
    assert_eq!(s.body["user"]["role"], "customer");
    assert_eq!(s.body["user"]["email_verified"], false);
    assert_eq!(s.body["user"]["profile"]["company_name"], "Acme");
    assert!(s.refresh.len() >= 43, "256-bit refresh token");
    let mails = outbox(&app, "verify_email", "thandi@example.com").await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["link"]
        .as_str()
        .unwrap()
        .contains("/auth/verify-email?token="));
}

async fn registering_a_taken_email_in_any_case_is_409(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    register_as(&app, "dup@example.com", "customer").await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "DUP@example.com", "password": PASSWORD, "first_name": "B"}),
        )
        .await;
    assert_problem(res, 409).await;
}

async fn registering_as_admin_or_an_unknown_role_is_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for role in ["admin", "ADMIN", "superuser", ""] {
        let res = app
            .post_json("/api/auth/register", &json!({"email": unique_email("esc"), "password": PASSWORD, "first_name": "Eve", "role": role}))
            .await;
        let body = assert_problem(res, 422).await;
        assert_eq!(body["errors"][0]["field"], "role", "{role}: {body}");
    }
    let res = app
        .post_json("/api/auth/register", &json!({"email": unique_email("esc"), "password": PASSWORD, "first_name": "Eve", "is_admin": true}))
        .await;
    assert_problem(res, 422).await;
}

async fn registration_lists_every_invalid_field_and_says_why_a_password_is_weak(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "not-an-email", "password": "password1234", "first_name": " "}),
        )
        .await;
    let body = assert_problem(res, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "first_name", "password"], "{body}");
    let why = body["errors"][2]["message"].as_str().unwrap();
    assert!(why.contains("too easy to guess"), "{why}");
    let res = app
        .post_json("/api/auth/register", &json!({"email": "jane.doe@example.com", "password": "jane.doe@example.com", "first_name": "Jane"}))
        .await;
    assert_problem(res, 422).await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "short@example.com", "password": "Xy7!short", "first_name": "S"}),
        )
        .await;
    let body = assert_problem(res, 422).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 12"),
        "{body}"
    );
}

async fn client_and_user_are_aliases_for_customer_and_developer_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (given, expected) in [
        ("client", "customer"),
        ("user", "customer"),
        ("developer", "developer"),
    ] {
        let s = register_as(&app, &unique_email(given), given).await;
        assert_eq!(s.body["user"]["role"], expected);
    }
}

async fn text_with_control_characters_is_refused_and_names_are_nfc_normalised(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post_json("/api/auth/register", &json!({"email": unique_email("c"), "password": PASSWORD, "first_name": "Bad\u{0007}Name"}))
        .await;
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "first_name");
    let res = app
        .post_json("/api/auth/register", &json!({"email": unique_email("n"), "password": PASSWORD, "first_name": "Rene\u{301}", "last_name": "x".repeat(101)}))
        .await;
    let body = assert_problem(res, 422).await;
    assert_eq!(
        body["errors"][0]["field"], "last_name",
        "too long is refused, not truncated"
    );
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": unique_email("n"), "password": PASSWORD, "first_name": "Rene\u{301}"}),
        )
        .await;
    let s = session_from(res).await;
    assert_eq!(s.body["user"]["first_name"], "Ren\u{e9}");
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let wrong = assert_problem(login(&app, &s.email, "not-the-password-at-all").await, 401).await;
    let unknown = assert_problem(login(&app, "nobody@example.com", PASSWORD).await, 401).await;
    let malformed = assert_problem(login(&app, "not an email", PASSWORD).await, 401).await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["detail"], malformed["detail"]);
    let ok = login_ok(&app, &s.email.to_uppercase(), PASSWORD).await;
    assert_eq!(ok.user_id, s.user_id);
}

async fn me_answers_the_signed_in_user_and_anonymous_calls_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_developer(&app).await;
    let res = get_authed(&app, "/api/auth/me", &s.access).await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    for key in [
        "id",
        "email",
        "role",
        "first_name",
        "last_name",
        "email_verified",
        "mfa_enabled",
        "created_at",
        "profile",
    ] {
        assert!(me.get(key).is_some(), "{key} in {me}");
    }
    assert_eq!(me["role"], "developer");
    assert!(
        me["profile"].get("skills").is_some(),
        "developer profile: {me}"
    );
    let res = app.get("/api/auth/me").await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_problem(res, 401).await;
}

async fn a_forged_expired_or_mistyped_token_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let keys = &app.state.get::<autorisen::domains::auth::Auth>().keys;
    let claims = keys
        .verify(&s.access, "access")
        .expect("the real token verifies");
    let now = chrono::Utc::now().timestamp();
    let expired = keys
        .sign(&autorisen::domains::auth::keys::Claims {
            iat: now - 1000,
            exp: now - 10,
            ..claims.clone()
        })
        .unwrap();
    let escalated = keys
        .sign(&autorisen::domains::auth::keys::Claims {
            role: autorisen::domains::users::Role::Admin,
            ..claims.clone()
        })
        .unwrap();
    let other_key = autorisen::domains::auth::keys::Keys::new(&"z".repeat(64), keys.issuer())
        .sign(&claims)
        .unwrap();
    let mfa_typed = keys
        .sign(&autorisen::domains::auth::keys::Claims {
            typ: "mfa".into(),
            ..claims.clone()
        })
        .unwrap();
    let mut tampered = s.access.clone();
    tampered.insert(tampered.len() - 3, 'A');
    for (what, token) in [
        ("expired", expired),
        ("role changed", escalated),
        ("other key", other_key),
        ("mfa-step token", mfa_typed),
        ("tampered", tampered),
        ("garbage", "abc".into()),
    ] {
        let res = get_authed(&app, "/api/auth/me", &token).await;
        assert_eq!(res.status(), 401, "{what}");
    }
    let res = app
        .client
        .get(app.url("/api/auth/me"))
        .header("authorization", format!("Basic {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

async fn patch_me_updates_names_and_profile_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let res = authed(&app, Method::PATCH, "/api/auth/me", &s.access)
        .json(&json!({"first_name": "Naledi", "profile": {"industry": "Retail", "website": "https://shop.example.com", "company_size": "11-50"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["first_name"], "Naledi");
    assert_eq!(me["last_name"], "Mokoena");
    assert_eq!(me["profile"]["industry"], "Retail");
    let res = authed(&app, Method::PATCH, "/api/auth/me", &s.access)
        .json(&json!({"profile": {"industry": null, "website": "ftp://nope", "phone": "call me"}}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["profile.website", "profile.phone"]);
    let res = authed(&app, Method::PATCH, "/api/auth/me", &s.access)
        .json(&json!({"profile": {"industry": null}}))
        .send()
        .await
        .unwrap();
    let me: serde_json::Value = res.json().await.unwrap();
    assert!(me["profile"]["industry"].is_null(), "{me}");
    assert_eq!(me["profile"]["company_size"], "11-50");
}

async fn patch_me_refuses_role_email_is_active_id_and_unknown_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    for body in [
        json!({"role": "admin"}),
        json!({"email": "x@example.com"}),
        json!({"is_active": false}),
        json!({"id": "x"}),
        json!({"profile": {"nickname": "x"}}),
        json!({"email_verified": true}),
    ] {
        let res = authed(&app, Method::PATCH, "/api/auth/me", &s.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(res, 422).await;
    }
    // A developer's field on a customer's profile: not invalid, not the caller's to set.
    let res = authed(&app, Method::PATCH, "/api/auth/me", &s.access)
        .json(&json!({"profile": {"skills": ["rust"]}}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    let me: serde_json::Value = get_authed(&app, "/api/auth/me", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "customer");
    assert_eq!(me["email"], s.email);
}

async fn developer_me_is_for_developers_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dev = register_developer(&app).await;
    let res = authed(&app, Method::PATCH, "/api/developer/me", &dev.access)
        .json(&json!({"skills": ["Rust", "SQL"], "github_url": "https://github.com/thandi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let profile: serde_json::Value = get_authed(&app, "/api/developer/me", &dev.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["skills"], json!(["Rust", "SQL"]));
    let res = authed(&app, Method::PATCH, "/api/developer/me", &dev.access)
        .json(&json!({"payout": {"iban": "x"}}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422).await;
    let customer = register_customer(&app).await;
    assert_problem(
        get_authed(&app, "/api/developer/me", &customer.access).await,
        403,
    )
    .await;
    assert_problem(app.get("/api/developer/me").await, 401).await;
}

async fn the_audit_trail_records_register_and_logins_without_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    assert_eq!(
        login(&app, &s.email, "wrong-password-attempt")
            .await
            .status(),
        401
    );
    let ok = login_ok(&app, &s.email, PASSWORD).await;
    let actions = audit_actions(&app, &s.user_id).await;
    let expected: Vec<(String, String)> = [
        ("register", "success"),
        ("login", "failure"),
        ("login", "success"),
    ]
    .iter()
    .map(|(a, o)| (a.to_string(), o.to_string()))
    .collect();
    assert_eq!(actions, expected);
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT details || ip || user_agent || request_id FROM audit_events")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    let dump = dump.join("\n");
    for secret in [
        PASSWORD,
        "wrong-password-attempt",
        ok.access.as_str(),
        ok.refresh.as_str(),
        s.refresh.as_str(),
    ] {
        assert!(
            !dump.contains(secret),
            "a secret leaked into the audit trail"
        );
    }
    let deleted = sqlx::query("DELETE FROM audit_events")
        .execute(app.state.db.pool())
        .await;
    assert!(deleted.is_err(), "audit_events is append-only");
}
