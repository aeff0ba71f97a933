//! Admin user management and the audit trail.

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    admin_routes_are_401_for_anonymous_callers_and_403_for_other_roles,
    admins_list_users_filtered_by_role_text_and_status_with_pages,
    an_admin_reads_one_user_and_an_unknown_id_is_404,
    a_role_change_refuses_old_tokens_at_once_and_a_refresh_carries_the_new_role,
    deactivating_a_user_ends_their_sessions_and_logins_until_reactivated,
    revoking_a_users_sessions_ends_every_one_of_them,
    an_admin_cannot_change_their_own_role_and_unknown_fields_are_422,
    the_audit_trail_filters_by_actor_action_target_and_time,
    a_users_activity_shows_admin_changes_without_the_admins_address,
);

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::Response {
    authed(app, Method::PATCH, &format!("/api/admin/users/{id}"), token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn admin_routes_are_401_for_anonymous_callers_and_403_for_other_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let customer = register_customer(&app).await;
    let developer = register_developer(&app).await;
    let id = customer.user_id.clone();
    let routes = [
        (Method::GET, "/api/admin/users".to_owned()),
        (Method::GET, format!("/api/admin/users/{id}")),
        (Method::PATCH, format!("/api/admin/users/{id}")),
        (
            Method::POST,
            format!("/api/admin/users/{id}/revoke-sessions"),
        ),
        (Method::GET, "/api/admin/audit".to_owned()),
    ];
    for (method, path) in &routes {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401).await;
        for token in [&customer.access, &developer.access] {
            let res = authed(&app, method.clone(), path, token)
                .json(&json!({"role": "admin"}))
                .send()
                .await
                .unwrap();
            assert_problem(res, 403).await;
        }
    }
    let me: Value = get_authed(&app, "/api/auth/me", &customer.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "customer", "no escalation happened");
}

async fn admins_list_users_filtered_by_role_text_and_status_with_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    register_as(&app, "zanele.dev@example.com", "developer").await;
    register_as(&app, "pieter@example.com", "customer").await;
    let off = register_as(&app, "sipho@example.com", "customer").await;
    assert_eq!(
        patch(
            &app,
            &admin.access,
            &off.user_id,
            json!({"is_active": false})
        )
        .await
        .status(),
        200
    );
    let page: Value = get_authed(&app, "/api/admin/users?role=developer", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["email"], "zanele.dev@example.com");
    let page: Value = get_authed(&app, "/api/admin/users?q=PIETER", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
    let page: Value = get_authed(&app, "/api/admin/users?q=%25", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 0, "a % is literal: {page}");
    let page: Value = get_authed(&app, "/api/admin/users?active=false", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["is_active"], false);
    let page: Value = get_authed(&app, "/api/admin/users?per_page=2&page=2", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

async fn an_admin_reads_one_user_and_an_unknown_id_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    let user: Value = get_authed(
        &app,
        &format!("/api/admin/users/{}", c.user_id),
        &admin.access,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(user["email"], c.email);
    assert_eq!(user["is_active"], true);
    assert!(user["last_login_at"].is_null());
    assert_problem(
        get_authed(&app, "/api/admin/users/nope", &admin.access).await,
        404,
    )
    .await;
}

async fn a_role_change_refuses_old_tokens_at_once_and_a_refresh_carries_the_new_role(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    let res = patch(
        &app,
        &admin.access,
        &c.user_id,
        json!({"role": "developer"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_problem(get_authed(&app, "/api/auth/me", &c.access).await, 401).await;
    let fresh = session_from(
        app.post_json("/api/auth/refresh", &json!({"refresh_token": c.refresh}))
            .await,
    )
    .await;
    assert_eq!(fresh.body["user"]["role"], "developer");
    assert_eq!(
        get_authed(&app, "/api/developer/me", &fresh.access)
            .await
            .status(),
        200
    );
    let actions = audit_actions(&app, &c.user_id).await;
    assert!(actions.contains(&("user_role_changed".into(), "success".into())));
}

async fn deactivating_a_user_ends_their_sessions_and_logins_until_reactivated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    assert_eq!(
        patch(&app, &admin.access, &c.user_id, json!({"is_active": false}))
            .await
            .status(),
        200
    );
    assert_problem(get_authed(&app, "/api/auth/me", &c.access).await, 401).await;
    assert_problem(
        app.post_json("/api/auth/refresh", &json!({"refresh_token": c.refresh}))
            .await,
        401,
    )
    .await;
    assert_problem(login(&app, &c.email, PASSWORD).await, 401).await;
    assert_eq!(
        patch(&app, &admin.access, &c.user_id, json!({"is_active": true}))
            .await
            .status(),
        200
    );
    login_ok(&app, &c.email, PASSWORD).await;
}

async fn revoking_a_users_sessions_ends_every_one_of_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    let second = login_ok(&app, &c.email, PASSWORD).await;
    let res = post_authed(
        &app,
        &format!("/api/admin/users/{}/revoke-sessions", c.user_id),
        &admin.access,
        &json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    for token in [&c.access, &second.access] {
        assert_problem(get_authed(&app, "/api/auth/me", token).await, 401).await;
    }
    assert_problem(
        app.post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": second.refresh}),
        )
        .await,
        401,
    )
    .await;
    login_ok(&app, &c.email, PASSWORD).await;
    let res = post_authed(
        &app,
        "/api/admin/users/nope/revoke-sessions",
        &admin.access,
        &json!({}),
    )
    .await;
    assert_problem(res, 404).await;
}

async fn an_admin_cannot_change_their_own_role_and_unknown_fields_are_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    assert_problem(
        patch(
            &app,
            &admin.access,
            &admin.user_id,
            json!({"role": "customer"}),
        )
        .await,
        409,
    )
    .await;
    assert_problem(
        patch(
            &app,
            &admin.access,
            &c.user_id,
            json!({"email": "x@example.com"}),
        )
        .await,
        422,
    )
    .await;
    assert_problem(
        patch(&app, &admin.access, &c.user_id, json!({"role": "root"})).await,
        422,
    )
    .await;
    assert_problem(
        patch(&app, &admin.access, "nope", json!({"role": "developer"})).await,
        404,
    )
    .await;
}

async fn the_audit_trail_filters_by_actor_action_target_and_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let c = register_customer(&app).await;
    let start = chrono::Utc::now();
    patch(
        &app,
        &admin.access,
        &c.user_id,
        json!({"role": "developer"}),
    )
    .await;
    let page: Value = get_authed(
        &app,
        &format!(
            "/api/admin/audit?actor={}&action=user_role_changed",
            admin.user_id
        ),
        &admin.access,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["total"], 1, "{page}");
    let event = &page["items"][0];
    assert_eq!(event["target_id"], c.user_id);
    assert_eq!(event["details"]["to"], "developer");
    assert_eq!(event["ip"], "127.0.0.1");
    assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let page: Value = get_authed(
        &app,
        &format!("/api/admin/audit?target={}", c.user_id),
        &admin.access,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["total"], 2, "register and the role change: {page}");
    let from = start
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B");
    let page: Value = get_authed(
        &app,
        &format!("/api/admin/audit?target={}&from={from}", c.user_id),
        &admin.access,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["total"], 1, "{page}");
    let res = get_authed(&app, "/api/admin/audit?from=yesterday", &admin.access).await;
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "from", "{body}");
}

/// Regression (security review): the user's own activity showed the admin's IP and browser.
async fn a_users_activity_shows_admin_changes_without_the_admins_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let user = register_customer(&app).await;
    let res = patch(
        &app,
        &admin.access,
        &user.user_id,
        json!({"role": "developer"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let relogged = login_ok(&app, &user.email, PASSWORD).await;
    let page: Value = get_authed(&app, "/api/auth/activity", &relogged.access)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().expect("items");
    let change = items
        .iter()
        .find(|e| e["action"] == "user_role_changed")
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(change["ip"], "", "{change}");
    assert_eq!(change["user_agent"], "", "{change}");
    let own = items.iter().find(|e| e["action"] == "register").unwrap();
    assert_ne!(own["ip"], "", "the user's own events keep their address");
}
