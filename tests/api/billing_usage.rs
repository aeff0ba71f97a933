//! Plan quotas: the public service other domains call (`billing::quota`), against a real app and
//! database, and `GET /api/billing/usage` over HTTP. No route consumes a quota yet (the assistant
//! and the marketplace come later), so the 429 is rendered through axum from the service's error.

use autorisen::{
    domains::billing::{
        quota::{self, Usage},
        types::Counter,
    },
    error::AppError,
};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;

use crate::{
    auth_helpers::*,
    billing::{itn, itn_result, order, post_itn, pro_monthly, spawn_with_payfast},
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_new_account_has_used_nothing_of_the_free_plans_limits_this_month,
    uses_count_against_their_counter_and_can_be_given_back,
    a_use_over_the_limit_is_refused_with_a_plan_limit_problem_and_counts_nothing,
    two_hundred_concurrent_uses_of_a_fifty_limit_grant_exactly_fifty,
    paying_for_pro_raises_the_limit_at_once_and_it_falls_back_after_the_grace_days,
    a_use_inside_a_callers_transaction_counts_only_if_it_commits,
    last_months_uses_do_not_count_this_month,
    the_openapi_document_describes_usage_and_the_plan_limit_problem,
);

const BASE: &str = "https://capecontrol.example";

/// The first instant of next month in Johannesburg (UTC+02:00), as UTC.
fn next_month() -> DateTime<Utc> {
    let now = Utc::now() + chrono::Duration::hours(2);
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    format!("{y}-{m:02}-01T00:00:00+02:00").parse().unwrap()
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn usage(app: &TestApp, token: &str) -> Value {
    let res = get_authed(app, "/api/billing/usage", token).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn limit_of(e: AppError) -> autorisen::error::PlanLimit {
    match e {
        AppError::PlanLimit(limit) => *limit,
        other => panic!("expected a plan limit, got {other:?}"),
    }
}

async fn a_new_account_has_used_nothing_of_the_free_plans_limits_this_month(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let body = usage(&app, &s.access).await;
    assert_eq!(body["plan"], "free");
    assert_eq!(at(&body["resets_at"]), next_month());
    for counter in ["assistant_messages", "agent_runs"] {
        let c = &body["counters"][counter];
        assert_eq!(
            (c["used"].as_i64(), c["limit"].as_i64()),
            (Some(0), Some(50)),
            "{body}"
        );
        assert_eq!(at(&c["resets_at"]), next_month());
    }
    // Months turn at midnight in Johannesburg: 00:30 on 1 April there is 22:30 on 31 March UTC.
    app.state.clock.set("2027-03-31T22:30:00Z".parse().unwrap());
    let body = usage(&app, &s.access).await;
    assert_eq!(body["period_start"], "2027-03-31T22:00:00Z", "{body}");
    assert_eq!(body["resets_at"], "2027-04-30T22:00:00Z", "{body}");
    assert_eq!(
        body["counters"]["agent_runs"]["resets_at"],
        "2027-04-30T22:00:00Z"
    );
    assert_problem(app.get("/api/billing/usage").await, 401).await;
}

async fn uses_count_against_their_counter_and_can_be_given_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let state = &app.state;
    let first = quota::consume(state, &s.user_id, Counter::AssistantMessages, 3)
        .await
        .unwrap();
    assert_eq!((first.used, first.limit), (3, 50));
    assert_eq!(first.resets_at, next_month());
    let runs = quota::consume(state, &s.user_id, Counter::AgentRuns, 2)
        .await
        .unwrap();
    assert_eq!(runs.used, 2);
    let body = usage(&app, &s.access).await;
    assert_eq!(body["counters"]["assistant_messages"]["used"], 3);
    assert_eq!(body["counters"]["agent_runs"]["used"], 2);
    // A failed AI call gives its use back; never below zero.
    quota::release(state, &s.user_id, &first, 1).await.unwrap();
    assert_eq!(
        usage(&app, &s.access).await["counters"]["assistant_messages"]["used"],
        2
    );
    quota::release(state, &s.user_id, &runs, 9).await.unwrap();
    assert_eq!(
        usage(&app, &s.access).await["counters"]["agent_runs"]["used"],
        0
    );
    // Another user's counters are their own.
    let other = register_customer(&app).await;
    assert_eq!(
        usage(&app, &other.access).await["counters"]["assistant_messages"]["used"],
        0
    );
}

async fn a_use_over_the_limit_is_refused_with_a_plan_limit_problem_and_counts_nothing(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &[("PUBLIC_BASE_URL", BASE)]).await;
    let s = register_customer(&app).await;
    let state = &app.state;
    let used = quota::consume(state, &s.user_id, Counter::AssistantMessages, 50)
        .await
        .unwrap();
    assert_eq!(used.used, 50);
    let refused = quota::consume(state, &s.user_id, Counter::AssistantMessages, 1)
        .await
        .unwrap_err();
    let limit = limit_of(refused);
    assert_eq!((limit.limit, limit.used), (50, 50));
    assert_eq!(limit.plan, "free");
    // More than the whole limit at once is refused too, and counts nothing.
    let too_many = quota::consume(state, &s.user_id, Counter::AgentRuns, 51)
        .await
        .unwrap_err();
    assert_eq!(limit_of(too_many).used, 0);
    let body = usage(&app, &s.access).await;
    assert_eq!(body["counters"]["assistant_messages"]["used"], 50);
    assert_eq!(body["counters"]["agent_runs"]["used"], 0);

    // As a route answers it: 429, problem+json, the limit's members, Retry-After to the reset.
    let error = quota::consume(state, &s.user_id, Counter::AssistantMessages, 1)
        .await
        .unwrap_err();
    let response = error.into_response();
    assert_eq!(response.status(), 429);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/problem+json");
    let retry: i64 = header("retry-after").parse().unwrap();
    let until_reset = (next_month() - Utc::now()).num_seconds();
    assert!(
        (until_reset - 5..=until_reset + 1).contains(&retry),
        "{retry} vs {until_reset}"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let problem: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(problem["type"], "/problems/plan-limit");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["title"], "Plan Limit Reached");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("assistant messages"),
        "{problem}"
    );
    assert_eq!(problem["counter"], "assistant_messages");
    assert_eq!(problem["limit"], 50);
    assert_eq!(problem["used"], 50);
    assert_eq!(problem["plan"], "free");
    assert_eq!(at(&problem["resets_at"]), next_month());
    assert_eq!(problem["upgrade_url"], format!("{BASE}/billing/plans"));
}

async fn two_hundred_concurrent_uses_of_a_fifty_limit_grant_exactly_fifty(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (state, user) = (app.state.clone(), s.user_id.clone());
            tokio::spawn(async move { quota::consume(&state, &user, Counter::AgentRuns, 1).await })
        })
        .collect();
    let mut granted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Usage { used, .. }) => granted.push(used),
            Err(AppError::PlanLimit(_)) => refused += 1,
            Err(other) => panic!("a use failed otherwise: {other:?}"),
        }
    }
    granted.sort_unstable();
    assert_eq!(
        granted,
        (1..=50).collect::<Vec<i64>>(),
        "each grant saw its own total"
    );
    assert_eq!(refused, 150);
    assert_eq!(
        usage(&app, &s.access).await["counters"]["agent_runs"]["used"],
        50
    );
}

async fn paying_for_pro_raises_the_limit_at_once_and_it_falls_back_after_the_grace_days(
    backend: Backend,
) {
    let (app, _fake) = spawn_with_payfast(backend, &[("BILLING_GRACE_DAYS", "3")]).await;
    let s = register_customer(&app).await;
    let state = &app.state;
    quota::consume(state, &s.user_id, Counter::AssistantMessages, 50)
        .await
        .unwrap();
    let refused = quota::consume(state, &s.user_id, Counter::AssistantMessages, 1).await;
    assert!(matches!(refused, Err(AppError::PlanLimit(_))));
    let order_id = order(&app, &s.access, pro_monthly()).await["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_itn(&app, itn(&order_id, "7101", "529.00", "COMPLETE")).await;
    assert_eq!(itn_result(res).await, "applied");
    let more = quota::consume(state, &s.user_id, Counter::AssistantMessages, 1)
        .await
        .unwrap();
    assert_eq!((more.used, more.limit), (51, 2000));
    let body = usage(&app, &s.access).await;
    assert_eq!(body["plan"], "pro");
    assert_eq!(body["counters"]["agent_runs"]["limit"], 2000);
    // An unpaid period keeps the plan's limits while past due, then the account is on free.
    let day = 86_400_000_000_i64;
    let ended = |days_ago: i64| {
        sqlx::query("UPDATE billing_subscriptions SET current_period_end = $1")
            .bind(Utc::now().timestamp_micros() - days_ago * day)
            .execute(app.state.db.pool())
    };
    ended(1).await.unwrap();
    let past_due = quota::consume(state, &s.user_id, Counter::AssistantMessages, 1)
        .await
        .unwrap();
    assert_eq!((past_due.used, past_due.limit), (52, 2000));
    ended(4).await.unwrap();
    let limit = limit_of(
        quota::consume(state, &s.user_id, Counter::AssistantMessages, 1)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (limit.plan.as_str(), limit.limit, limit.used),
        ("free", 50, 52)
    );
    let body = usage(&app, &s.access).await;
    assert_eq!(body["plan"], "free");
    assert_eq!(body["counters"]["assistant_messages"]["used"], 52);
}

async fn a_use_inside_a_callers_transaction_counts_only_if_it_commits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let state = &app.state;
    let mut tx = state.db.begin().await.unwrap();
    let inside = quota::consume_in(state, &mut tx, &s.user_id, Counter::AgentRuns, 5)
        .await
        .unwrap();
    assert_eq!(inside.used, 5);
    tx.rollback().await.unwrap();
    assert_eq!(
        usage(&app, &s.access).await["counters"]["agent_runs"]["used"],
        0
    );
    let mut tx = state.db.begin().await.unwrap();
    quota::consume_in(state, &mut tx, &s.user_id, Counter::AgentRuns, 45)
        .await
        .unwrap();
    // A refusal leaves the caller's transaction usable: its earlier work still commits.
    let refused = quota::consume_in(state, &mut tx, &s.user_id, Counter::AgentRuns, 6).await;
    assert!(matches!(refused, Err(AppError::PlanLimit(_))));
    tx.commit().await.unwrap();
    assert_eq!(
        usage(&app, &s.access).await["counters"]["agent_runs"]["used"],
        45
    );
}

async fn last_months_uses_do_not_count_this_month(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = register_customer(&app).await;
    let this_month = quota::consume(&app.state, &s.user_id, Counter::AssistantMessages, 1)
        .await
        .unwrap();
    let last_month = this_month
        .period_start
        .checked_sub_months(chrono::Months::new(1))
        .unwrap();
    sqlx::query("UPDATE billing_usage SET period_start = $1, used = 50")
        .bind(last_month.timestamp_micros())
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let body = usage(&app, &s.access).await;
    assert_eq!(body["counters"]["assistant_messages"]["used"], 0);
    let now = quota::consume(&app.state, &s.user_id, Counter::AssistantMessages, 50)
        .await
        .unwrap();
    assert_eq!(now.used, 50);
}

async fn the_openapi_document_describes_usage_and_the_plan_limit_problem(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let ok = &spec["paths"]["/api/billing/usage"]["get"]["responses"]["200"];
    assert_eq!(
        ok["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/UsageView",
        "{ok}"
    );
    let schemas = &spec["components"]["schemas"];
    let counters = &schemas["UsageCounters"]["required"];
    assert_eq!(
        counters,
        &serde_json::json!(["assistant_messages", "agent_runs"])
    );
    let usage = &schemas["CounterUsage"]["required"];
    assert_eq!(usage, &serde_json::json!(["used", "limit", "resets_at"]));
    // The problem's members and the limit's, in one document.
    let problem = schemas["PlanLimitProblem"].to_string();
    assert!(
        problem.contains("#/components/schemas/Problem"),
        "{problem}"
    );
    assert!(
        problem.contains("#/components/schemas/PlanLimit"),
        "{problem}"
    );
    let limit = &schemas["PlanLimit"]["required"];
    for member in [
        "counter",
        "limit",
        "used",
        "plan",
        "resets_at",
        "upgrade_url",
    ] {
        assert!(
            limit.as_array().unwrap().iter().any(|m| m == member),
            "{member}: {limit}"
        );
    }
}
