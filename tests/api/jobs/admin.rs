//! `/api/admin/jobs…` through real HTTP: admins list and retry jobs, see and run schedules, and
//! never see a secret in a job.

use autorisen::{
    db::types::now_micros,
    jobs::{upkeep::PRUNE, NewJob},
};
use reqwest::Method;
use serde_json::{json, Value};

use super::{eventually, queue, until_state};
use crate::{
    auth_helpers::{authed, register_customer, token_from_outbox},
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    admins_list_jobs_by_state_and_retry_only_failed_or_dead_ones,
    job_routes_are_401_for_anonymous_callers_and_403_for_non_admins,
    admins_see_the_schedules_and_run_one_now,
    a_password_reset_mails_job_shows_recipient_and_template_but_never_the_link,
);

async fn post_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    authed(app, Method::POST, path, token).send().await.unwrap()
}

/// A prune job parked far in the future, then put in `state` by hand.
async fn parked(app: &TestApp, state: &str) -> String {
    let db = &app.state.db;
    let job = NewJob {
        run_at: Some(chrono::Utc::now() + chrono::Duration::days(1)),
        ..NewJob::new(PRUNE, json!({}))
    };
    let id = queue(db, &app.state.jobs, vec![job]).await[0].clone();
    let now = now_micros();
    let (lease_until, leased_by, finished_at) = match state {
        "running" => (Some(now + 3_600_000_000), Some("elsewhere/1"), None),
        _ => (None, None, Some(now)),
    };
    sqlx::query(
        "UPDATE jobs SET state = $1, attempts = max_attempts, last_error = 'simulated outage', \
         lease_until = $2, leased_by = $3, finished_at = $4 WHERE id = $5",
    )
    .bind(state.to_owned())
    .bind(lease_until)
    .bind(leased_by)
    .bind(finished_at)
    .bind(id.clone())
    .execute(db.pool())
    .await
    .unwrap();
    id
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn admins_list_jobs_by_state_and_retry_only_failed_or_dead_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let dead = parked(&app, "dead").await;
    let running = parked(&app, "running").await;
    let done = app.state.jobs.run_schedule_now(PRUNE).await.unwrap();
    until_state(&app.state.db, &done, "done").await;

    let page = app.admin_get("/api/admin/jobs?state=dead").await;
    assert_eq!(ids(&page), [dead.as_str()]);
    assert_eq!(
        (page["total"].as_u64(), page["page"].as_u64()),
        (Some(1), Some(1))
    );
    let job = &page["items"][0];
    assert_eq!(job["kind"], PRUNE);
    assert_eq!(job["state"], "dead");
    assert_eq!(job["last_error"], "simulated outage");
    assert_eq!(job["payload"], json!({}));
    let page = app.admin_get("/api/admin/jobs?state=running").await;
    assert_eq!(ids(&page), [running.as_str()]);
    let all = app.admin_get("/api/admin/jobs?per_page=2").await;
    assert_eq!(
        (all["total"].as_u64(), all["per_page"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(ids(&all), [done.clone(), running.clone()], "newest first");
    let bad = authed(&app, Method::GET, "/api/admin/jobs?state=stuck", &admin)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422).await;
    assert_eq!(problem["errors"][0]["field"], "state");

    let res = post_as(&app, &format!("/api/admin/jobs/{dead}/retry"), &admin).await;
    assert_eq!(res.status(), 202);
    let queued: Value = res.json().await.unwrap();
    assert_eq!(
        (queued["state"].as_str(), queued["attempts"].as_u64()),
        (Some("queued"), Some(0))
    );
    let ran = until_state(&app.state.db, &dead, "done").await;
    assert_eq!(ran.attempts, 1, "it ran, with fresh attempts");

    for (id, status) in [(&running, 409), (&done, 409), (&dead, 409)] {
        let res = post_as(&app, &format!("/api/admin/jobs/{id}/retry"), &admin).await;
        assert_problem(res, status).await;
    }
    let unknown = post_as(
        &app,
        "/api/admin/jobs/0190b6a0-0000-7000-8000-000000000000/retry",
        &admin,
    )
    .await;
    assert_problem(unknown, 404).await;
}

async fn job_routes_are_401_for_anonymous_callers_and_403_for_non_admins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let customer = register_customer(&app).await;
    let routes = [
        (Method::GET, "/api/admin/jobs".to_owned()),
        (
            Method::POST,
            format!("/api/admin/jobs/{}/retry", uuid::Uuid::now_v7()),
        ),
        (Method::GET, "/api/admin/jobs/schedules".to_owned()),
        (
            Method::POST,
            format!("/api/admin/jobs/schedules/{PRUNE}/run"),
        ),
    ];
    for (method, path) in &routes {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401).await;
        let res = authed(&app, method.clone(), path, &customer.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, 403).await;
    }
    let schedules = app.state.jobs.schedules().await.unwrap();
    assert!(
        schedules.iter().all(|s| s.last_job_id.is_none()),
        "nothing ran"
    );
}

async fn admins_see_the_schedules_and_run_one_now(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let listed = eventually("the runner declared its schedules", || async {
        let list = app.admin_get("/api/admin/jobs/schedules").await;
        (!list["schedules"][0]["next_run_at"].is_null()).then_some(list)
    })
    .await;
    let prune = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PRUNE)
        .unwrap();
    assert_eq!(prune["name"], PRUNE);
    assert_eq!(prune["every"], "daily at 03:00 UTC");
    assert_eq!(prune["kind"], PRUNE);
    assert!(prune["last_run_at"].is_null() && prune["last_job_id"].is_null());
    let next = prune["next_run_at"].as_str().unwrap();
    assert!(next.contains("T03:00:00"), "{next}");

    let res = post_as(
        &app,
        &format!("/api/admin/jobs/schedules/{PRUNE}/run"),
        &admin,
    )
    .await;
    assert_eq!(res.status(), 202);
    let job_id = res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    until_state(&app.state.db, &job_id, "done").await;
    let after = app.admin_get("/api/admin/jobs/schedules").await;
    let prune = after["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PRUNE)
        .unwrap();
    assert_eq!(prune["last_job_id"], job_id.as_str());
    assert!(prune["last_run_at"].is_string());
    assert_eq!(prune["next_run_at"], next, "the next period is unchanged");

    let res = post_as(
        &app,
        "/api/admin/jobs/schedules/no.such.schedule/run",
        &admin,
    )
    .await;
    assert_problem(res, 404).await;
}

async fn a_password_reset_mails_job_shows_recipient_and_template_but_never_the_link(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let res = app
        .post_json(
            "/api/auth/password-reset/request",
            &json!({"email": user.email}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let token = token_from_outbox(&app, "password_reset", &user.email).await;

    let reset = eventually("the reset mail's job is done", || async {
        let page = app
            .admin_get("/api/admin/jobs?state=done&per_page=100")
            .await;
        let items = page["items"].as_array().unwrap().clone();
        items
            .into_iter()
            .find(|j| j["payload"]["template"] == "password_reset")
    })
    .await;
    assert_eq!(reset["kind"], "mail.send");
    assert_eq!(reset["max_attempts"], 8, "MAIL_MAX_ATTEMPTS");
    let payload = reset["payload"].as_object().unwrap();
    let mut keys: Vec<&str> = payload.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["outbox_id", "template", "to"]);
    assert_eq!(payload["to"], user.email.as_str());
    let everything = app
        .admin_get("/api/admin/jobs?per_page=100")
        .await
        .to_string();
    assert!(!everything.contains(&token), "the reset token never shows");
    assert!(!everything.contains("reset-password"), "nor the link");
    assert!(!everything.contains("token="), "{everything}");
}
