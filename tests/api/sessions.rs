//! Refresh rotation and reuse detection, logout, sessions, password change and revocation.

use reqwest::Method;
use serde_json::json;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    an_id_with_a_nul_character_is_a_client_error_not_a_500,
    refresh_rotates_the_pair_and_the_spent_token_is_refused,
    a_spent_refresh_token_replayed_after_the_grace_revokes_the_whole_session,
    a_spent_refresh_token_replayed_within_the_grace_is_refused_without_revoking,
    the_refresh_cookie_works_only_with_an_allowed_origin,
    over_https_the_refresh_cookie_is_host_bound_and_kept_out_of_browser_bodies,
    logout_ends_the_session_at_once_for_access_and_refresh_tokens,
    logout_all_ends_every_session_of_the_user,
    sessions_are_listed_with_the_current_one_marked,
    deleting_a_session_ends_it_and_another_users_session_is_404,
    changing_the_password_ends_other_sessions_and_queues_a_notice,
    a_wrong_current_password_is_403_and_a_weak_new_one_is_422,
    activity_shows_own_security_events_newest_first_paginated,
);

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/auth/refresh", &json!({"refresh_token": token}))
        .await
}

async fn refresh_rotates_the_pair_and_the_spent_token_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let next = session_from(refresh(&app, &s.refresh).await).await;
    assert_ne!(next.refresh, s.refresh);
    assert_eq!(
        get_authed(&app, "/api/auth/me", &next.access)
            .await
            .status(),
        200
    );
    assert_problem(refresh(&app, &s.refresh).await, 401).await;
    assert_problem(refresh(&app, "made-up-token").await, 401).await;
    let third = session_from(refresh(&app, &next.refresh).await).await;
    assert_eq!(third.user_id, s.user_id);
}

async fn a_spent_refresh_token_replayed_after_the_grace_revokes_the_whole_session(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let s = register_customer(&app).await;
    let next = session_from(refresh(&app, &s.refresh).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_problem(refresh(&app, &s.refresh).await, 401).await;
    assert_problem(refresh(&app, &next.refresh).await, 401).await;
    assert_problem(get_authed(&app, "/api/auth/me", &next.access).await, 401).await;
    let actions = audit_actions(&app, &s.user_id).await;
    assert!(
        actions.contains(&("refresh_token_reused".into(), "failure".into())),
        "{actions:?}"
    );
}

async fn a_spent_refresh_token_replayed_within_the_grace_is_refused_without_revoking(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let next = session_from(refresh(&app, &s.refresh).await).await;
    assert_problem(refresh(&app, &s.refresh).await, 401).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &next.access)
            .await
            .status(),
        200
    );
    assert_eq!(refresh(&app, &next.refresh).await.status(), 200);
}

async fn the_refresh_cookie_works_only_with_an_allowed_origin(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, &[("PUBLIC_BASE_URL", "https://app.example.test")]).await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": unique_email("c"), "password": PASSWORD, "first_name": "C"}),
        )
        .await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let send = |origin: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/api/auth/refresh"))
            .header("cookie", pair.clone());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_problem(send(None).await.unwrap(), 403).await;
    assert_problem(send(Some("https://evil.example")).await.unwrap(), 403).await;
    let res = send(Some("https://app.example.test")).await.unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-autorisen_refresh="), "{cookie}");
    // A browser (it sent Origin) gets the refresh token in the cookie only.
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body["access_token"].is_string());
}

/// Issue 15, point 8: over https the cookie is `__Host-` (Secure, Path=/, no Domain), and a
/// browser login never sees the refresh token in a body; scripts without Origin still do.
async fn over_https_the_refresh_cookie_is_host_bound_and_kept_out_of_browser_bodies(
    backend: Backend,
) {
    let app =
        TestApp::spawn_with(backend, &[("PUBLIC_BASE_URL", "https://app.example.test")]).await;
    let s = register_customer(&app).await;
    let res = app
        .client
        .post(app.url("/api/auth/login"))
        .header("origin", "https://app.example.test")
        .json(&json!({"email": s.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-autorisen_refresh="), "{cookie}");
    assert!(cookie.contains("; Path=/;"), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    // A script (no Origin) keeps the body form.
    let body: serde_json::Value = login(&app, &s.email, PASSWORD).await.json().await.unwrap();
    assert!(body["refresh_token"].is_string(), "{body}");
    // Over plain http (development) the cookie keeps its old name, scoped to /api/auth.
    let dev = TestApp::spawn(backend).await;
    let res = dev
        .post_json(
            "/api/auth/register",
            &json!({"email": unique_email("c"), "password": PASSWORD, "first_name": "C"}),
        )
        .await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("autorisen_refresh="), "{cookie}");
    assert!(cookie.contains("Path=/api/auth"), "{cookie}");
}

async fn logout_ends_the_session_at_once_for_access_and_refresh_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let other = login_ok(&app, &s.email, PASSWORD).await;
    let res = post_authed(&app, "/api/auth/logout", &s.access, &json!({})).await;
    assert_eq!(res.status(), 204);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_problem(get_authed(&app, "/api/auth/me", &s.access).await, 401).await;
    assert_problem(refresh(&app, &s.refresh).await, 401).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &other.access)
            .await
            .status(),
        200,
        "other sessions live on"
    );
    assert_problem(app.post_json("/api/auth/logout", &json!({})).await, 401).await;
}

async fn logout_all_ends_every_session_of_the_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let other = login_ok(&app, &s.email, PASSWORD).await;
    let bystander = register_customer(&app).await;
    assert_eq!(
        post_authed(&app, "/api/auth/logout-all", &s.access, &json!({}))
            .await
            .status(),
        204
    );
    for token in [&s.access, &other.access] {
        assert_problem(get_authed(&app, "/api/auth/me", token).await, 401).await;
    }
    assert_problem(refresh(&app, &other.refresh).await, 401).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &bystander.access)
            .await
            .status(),
        200
    );
}

async fn sessions_are_listed_with_the_current_one_marked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let _second = login_ok(&app, &s.email, PASSWORD).await;
    let list: serde_json::Value = get_authed(&app, "/api/auth/sessions", &s.access)
        .await
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    for key in ["id", "created_at", "last_used_at", "ip", "user_agent"] {
        assert!(list[0].get(key).is_some(), "{key}");
    }
    assert_eq!(list[0]["ip"], "127.0.0.1");
}

async fn deleting_a_session_ends_it_and_another_users_session_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let second = login_ok(&app, &s.email, PASSWORD).await;
    let mallory = register_customer(&app).await;
    let list: serde_json::Value = get_authed(&app, "/api/auth/sessions", &s.access)
        .await
        .json()
        .await
        .unwrap();
    let other_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = authed(
        &app,
        Method::DELETE,
        &format!("/api/auth/sessions/{other_id}"),
        &mallory.access,
    )
    .send()
    .await
    .unwrap();
    assert_problem(res, 404).await;
    assert_eq!(
        get_authed(&app, "/api/auth/me", &second.access)
            .await
            .status(),
        200
    );
    let res = authed(
        &app,
        Method::DELETE,
        &format!("/api/auth/sessions/{other_id}"),
        &s.access,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(get_authed(&app, "/api/auth/me", &second.access).await, 401).await;
    let res = authed(
        &app,
        Method::DELETE,
        &format!("/api/auth/sessions/{other_id}"),
        &s.access,
    )
    .send()
    .await
    .unwrap();
    assert_problem(res, 404).await;
}

async fn changing_the_password_ends_other_sessions_and_queues_a_notice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let other = login_ok(&app, &s.email, PASSWORD).await;
    let res = post_authed(
        &app,
        "/api/auth/change-password",
        &s.access,
        &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        get_authed(&app, "/api/auth/me", &s.access).await.status(),
        200,
        "the current session stays"
    );
    assert_problem(get_authed(&app, "/api/auth/me", &other.access).await, 401).await;
    assert_problem(login(&app, &s.email, PASSWORD).await, 401).await;
    login_ok(&app, &s.email, NEW_PASSWORD).await;
    assert_eq!(outbox(&app, "password_changed", &s.email).await.len(), 1);
}

async fn a_wrong_current_password_is_403_and_a_weak_new_one_is_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let res = post_authed(
        &app,
        "/api/auth/change-password",
        &s.access,
        &json!({"current_password": "nope-not-it-at-all", "new_password": NEW_PASSWORD}),
    )
    .await;
    let body = assert_problem(res, 403).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("current password"),
        "{body}"
    );
    let res = post_authed(
        &app,
        "/api/auth/change-password",
        &s.access,
        &json!({"current_password": PASSWORD, "new_password": "password1234"}),
    )
    .await;
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    login_ok(&app, &s.email, PASSWORD).await;
}

async fn activity_shows_own_security_events_newest_first_paginated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    assert_eq!(
        login(&app, &s.email, "wrong-password-here").await.status(),
        401
    );
    login_ok(&app, &s.email, PASSWORD).await;
    let other = register_customer(&app).await;
    let page: serde_json::Value = get_authed(&app, "/api/auth/activity?per_page=2", &s.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(page["per_page"], 2);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "login");
    assert_eq!(items[0]["outcome"], "success");
    assert_eq!(items[1]["outcome"], "failure");
    let page2: serde_json::Value =
        get_authed(&app, "/api/auth/activity?per_page=2&page=2", &s.access)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(page2["items"][0]["action"], "register");
    let theirs: serde_json::Value = get_authed(&app, "/api/auth/activity", &other.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total"], 1);
}

/// Regression (security review): PostgreSQL refuses NUL in text, which surfaced as a 500.
async fn an_id_with_a_nul_character_is_a_client_error_not_a_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let res = authed(&app, Method::DELETE, "/api/auth/sessions/a%00b", &s.access)
        .send()
        .await
        .unwrap();
    // Ids are UUIDs: anything else names nothing, and never reaches the database.
    assert_problem(res, 404).await;
    let admin = app.admin_token().await;
    // Regression (schemathesis on PostgreSQL): a NUL in a filter was an undocumented 400.
    for path in [
        "/api/admin/users?q=a%00b",
        "/api/admin/audit?action=a%00b",
        "/api/admin/users/a%00b",
    ] {
        let res = authed(&app, Method::GET, path, &admin)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(status == 422 || status == 404, "{path}: {status}");
        assert_problem(res, status).await;
    }
    let res = app
        .post_json(
            "/api/auth/login",
            &serde_json::json!({"email": "a\u{0}b@example.com", "password": "x"}),
        )
        .await;
    assert_problem(res, 422).await;
}
