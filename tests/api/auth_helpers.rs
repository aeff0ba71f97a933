//! Reusable identity helpers: register users, get tokens, make admins, read the mail outbox.
#![allow(dead_code)] // shared by every domain's tests

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::Row;

use crate::helpers::TestApp;

/// A password the policy accepts.
pub const PASSWORD: &str = "orbit-velvet-cactus-lantern-42";
/// Another acceptable password.
pub const NEW_PASSWORD: &str = "granite-meadow-pelican-harbor-77";

/// A signed-in user as a test sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user id.
    pub user_id: String,
    /// The email.
    pub email: String,
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
    /// The whole token response.
    pub body: Value,
}

/// A fresh, unique email address.
pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}.{}@example.com", uuid::Uuid::new_v4().simple())
}

/// `method path` with `Authorization: Bearer token`.
pub fn authed(app: &TestApp, method: Method, path: &str, token: &str) -> RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

/// `GET path` with a bearer token.
pub async fn get_authed(app: &TestApp, path: &str, token: &str) -> Response {
    authed(app, Method::GET, path, token).send().await.unwrap()
}

/// `GET path` with `token`, its body as JSON (whatever the status).
pub async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    get_authed(app, path, token).await.json().await.unwrap()
}

/// `POST path` with a bearer token and a JSON body.
pub async fn post_authed(app: &TestApp, path: &str, token: &str, body: &Value) -> Response {
    authed(app, Method::POST, path, token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Reads a token response into a [`Session`].
pub async fn session_from(res: Response) -> Session {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    Session {
        user_id: body["user"]["id"].as_str().unwrap().to_owned(),
        email: body["user"]["email"].as_str().unwrap().to_owned(),
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// Registers `email` with `role` and the standard password.
pub async fn register_as(app: &TestApp, email: &str, role: &str) -> Session {
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": email, "password": PASSWORD, "first_name": "Thandi", "last_name": "Mokoena", "role": role}),
        )
        .await;
    assert_eq!(res.status(), 201);
    session_from(res).await
}

/// Registers a new customer with a unique email.
pub async fn register_customer(app: &TestApp) -> Session {
    register_as(app, &unique_email("customer"), "customer").await
}

/// Registers a new developer with a unique email.
pub async fn register_developer(app: &TestApp) -> Session {
    register_as(app, &unique_email("developer"), "developer").await
}

/// `POST /api/auth/login`.
pub async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.post_json(
        "/api/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Logs in and returns the session (panics unless it succeeds without MFA).
pub async fn login_ok(app: &TestApp, email: &str, password: &str) -> Session {
    session_from(login(app, email, password).await).await
}

/// A new admin: registered as a customer, promoted in the database (as `create-admin` would),
/// then logged in afresh.
pub async fn make_admin(app: &TestApp) -> Session {
    let user = register_customer(app).await;
    sqlx::query("UPDATE users SET role = 'admin', profile = '{}', token_epoch = token_epoch + 1 WHERE id = $1")
        .bind(user.user_id.clone())
        .execute(app.state.db.pool())
        .await
        .unwrap();
    login_ok(app, &user.email, PASSWORD).await
}

/// The messages of `template` sent to `to`, oldest first, as delivered: each is waited for
/// (the test apps deliver to `.eml` files, see `helpers::base_vars`) and read back from its
/// file, so a test sees what the recipient gets. `{"subject", "text", "link"}`.
pub async fn outbox(app: &TestApp, template: &str, to: &str) -> Vec<Value> {
    queued_work_done(app).await;
    let rows = sqlx::query(
        "SELECT id FROM mail_outbox WHERE template = $1 AND recipient = $2 ORDER BY created_at, id",
    )
    .bind(template.to_owned())
    .bind(to.to_owned())
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let mut delivered = Vec::new();
    for row in rows {
        delivered.push(delivered_message(app, &row.get::<String, _>("id"), to).await);
    }
    delivered
}

/// Waits (at most 10 s) until no reset request is still queued: the reset link is made by a job
/// (`auth.password_reset`), so that the request answers in the same time for any email.
pub async fn queued_work_done(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'auth.password_reset' \
             AND state IN ('queued', 'running', 'failed')",
        )
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("n");
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} reset requests still queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Lets the email budget of `template` for `to` forget its last email, as if a minute passed.
pub async fn a_minute_passes_for_mail(app: &TestApp, template: &str, to: &str) {
    sqlx::query("UPDATE auth_guards SET updated_at = updated_at - 61000000 WHERE subject = $1 AND kind = $2")
        .bind(format!("mail:{}", to.to_lowercase()))
        .bind(format!("mail:{template}"))
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// Waits (at most 10 s) for the message with outbox id `id` to land in the app's mail folder.
async fn delivered_message(app: &TestApp, id: &str, to: &str) -> Value {
    let folder = app.mail_dir();
    let needle = format!("Message-ID: <{id}@");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let raw = std::fs::read(entry.path()).unwrap_or_default();
            if !String::from_utf8_lossy(&raw).contains(&needle) {
                continue;
            }
            let message = crate::mail::parse(&raw);
            let recipient = message
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address());
            assert_eq!(recipient, Some(to), "delivered to the right address");
            let text = message.body_text(0).unwrap_or_default().into_owned();
            let link = text
                .split_whitespace()
                .find(|w| w.starts_with("http") && w.contains("token="))
                .map(str::to_owned);
            return serde_json::json!({
                "subject": message.subject().unwrap_or_default(),
                "text": text,
                "link": link,
            });
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message {id} was not delivered to {}",
            folder.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The token in the newest delivered link of `template` to `to`.
pub async fn token_from_outbox(app: &TestApp, template: &str, to: &str) -> String {
    let messages = outbox(app, template, to).await;
    let link = messages
        .last()
        .unwrap_or_else(|| panic!("no {template} mail to {to}"))["link"]
        .as_str()
        .unwrap_or_else(|| panic!("the {template} mail has no link"))
        .to_owned();
    let url = url::Url::parse(&link).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned()
}

/// The actions recorded in the audit trail about `target`, oldest first, with their outcome.
pub async fn audit_actions(app: &TestApp, target: &str) -> Vec<(String, String)> {
    sqlx::query("SELECT action, outcome FROM audit_events WHERE target_id = $1 ORDER BY at, id")
        .bind(target.to_owned())
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("action"), r.get("outcome")))
        .collect()
}
