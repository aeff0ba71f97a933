//! Rate limits by route class: headers, 429, shadow mode, trusted proxies, the Redis backend.

use crate::{
    helpers::{assert_problem, redis_url, Backend, TestApp},
    on_both_backends,
};
use autorisen::edge::Admission;

on_both_backends!(
    a_limited_route_carries_the_ratelimit_policy_and_state_headers,
    past_the_quota_a_request_is_a_429_problem_with_retry_after_no_earlier_than_t,
    auth_routes_have_a_budget_of_their_own_on_top_of_the_general_one,
    password_validation_spends_the_auth_budget,
    probes_and_docs_are_never_limited,
    shadow_mode_refuses_nothing_but_counts_what_it_would_have_refused,
    a_policy_turned_off_adds_no_headers_and_refuses_nothing,
    a_spoofed_x_forwarded_for_is_ignored_without_a_trusted_proxy,
    the_ipv6_clients_of_one_48_share_an_aggregate_budget,
    through_a_trusted_proxy_each_forwarded_client_has_its_own_budget,
    the_redis_backend_shares_one_budget_between_instances,
    with_redis_unreachable_the_limiter_fails_open_and_counts_the_failure,
    with_redis_unreachable_and_failing_closed_limited_routes_answer_503,
    the_ai_policy_limits_each_user_separately,
    the_admin_endpoints_refuse_anonymous_callers_and_non_admins,
    the_auth_policy_also_limits_each_target_account_across_client_addresses,
    the_redis_backend_keeps_quotas_above_a_thousand_per_second_exact,
);

fn t_of(ratelimit: &str) -> u64 {
    ratelimit
        .split(";t=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no t in {ratelimit}"))
}

async fn a_limited_route_carries_the_ratelimit_policy_and_state_headers(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_GENERAL", "5/60")]).await;
    let res = app.get("/api/status").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        TestApp::header(&res, "ratelimit-policy"),
        r#""general";q=5;w=60"#
    );
    assert_eq!(TestApp::header(&res, "ratelimit"), r#""general";r=4;t=12"#);
    let second = app.get("/api/status").await;
    assert_eq!(
        TestApp::header(&second, "ratelimit"),
        r#""general";r=3;t=24"#
    );
}

async fn past_the_quota_a_request_is_a_429_problem_with_retry_after_no_earlier_than_t(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_GENERAL", "3/60")]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/status").await.status(), 200);
    }
    let res = app.get("/api/status").await;
    let ratelimit = TestApp::header(&res, "ratelimit");
    let retry_after: u64 = TestApp::header(&res, "retry-after").parse().unwrap();
    assert!(ratelimit.contains("r=0"), "{ratelimit}");
    assert!(
        retry_after >= t_of(&ratelimit),
        "{retry_after} vs {ratelimit}"
    );
    assert_eq!(retry_after, 20, "one request refills every 60/3 s");
    let body = assert_problem(res, 429).await;
    assert!(
        body["detail"].as_str().unwrap().contains("general"),
        "{body}"
    );
}

async fn auth_routes_have_a_budget_of_their_own_on_top_of_the_general_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_AUTH", "2/60")]).await;
    let empty = serde_json::json!({});
    let login = || app.post_json("/api/auth/login", &empty);
    let first = login().await;
    assert_eq!(
        TestApp::header(&first, "ratelimit-policy"),
        r#""general";q=600;w=60, "auth";q=10;w=60"#.replace("q=10", "q=2")
    );
    assert_ne!(first.status(), 429);
    assert_ne!(login().await.status(), 429);
    let refused = login().await;
    assert!(TestApp::header(&refused, "ratelimit").contains(r#""auth";r=0"#));
    assert_problem(refused, 429).await;
    // Other routes still have their general budget.
    assert_eq!(app.get("/api/status").await.status(), 200);
    let other_auth = app
        .post_json("/api/auth/password-reset/request", &serde_json::json!({}))
        .await;
    assert_eq!(
        other_auth.status(),
        429,
        "the auth budget is per client, shared by its routes"
    );
}

async fn password_validation_spends_the_auth_budget(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_AUTH", "2/60")]).await;
    let candidate = serde_json::json!({"password": "correct horse battery staple"});
    let check = || app.post_json("/api/auth/v2/validate-password", &candidate);
    let first = check().await;
    assert_eq!(first.status(), 200);
    assert!(
        TestApp::header(&first, "ratelimit-policy").contains(r#""auth";q=2;w=60"#),
        "the route is in the auth class"
    );
    assert_eq!(check().await.status(), 200);
    assert_problem(check().await, 429).await;
}

async fn probes_and_docs_are_never_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_GENERAL", "1/60")]).await;
    for _ in 0..3 {
        for path in [
            "/health",
            "/alive",
            "/ready",
            "/api/health",
            "/docs/",
            "/openapi.json",
            "/version.json",
        ] {
            let res = app.get(path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert!(res.headers().get("ratelimit").is_none(), "{path}");
        }
    }
}

async fn shadow_mode_refuses_nothing_but_counts_what_it_would_have_refused(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_MODE", "shadow"),
            ("RATE_LIMIT_GENERAL", "2/60"),
        ],
    )
    .await;
    for i in 0..5 {
        let res = app.get("/api/version-does-not-exist").await;
        assert_eq!(res.status(), 404, "request {i} is answered, not refused");
        assert!(res.headers().get("ratelimit").is_some());
    }
    let report = app.admin_get("/api/admin/rate-limits").await;
    let general = &report["policies"][0];
    assert_eq!(general["name"], "general");
    assert_eq!(general["mode"], "shadow");
    assert_eq!(general["allowed"], 2, "{report}");
    // The report's own request is the fourth over the quota.
    assert_eq!(general["would_refuse"], 4, "{report}");
    assert_eq!(general["refused"], 0, "{report}");
    assert_eq!(general["top_keys"][0]["key"], "ip:127.0.0.1", "{report}");
    assert_eq!(general["top_keys"][0]["refusals"], 4, "{report}");
}

async fn a_policy_turned_off_adds_no_headers_and_refuses_nothing(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_GENERAL", "1/60"),
            ("RATE_LIMIT_GENERAL_MODE", "off"),
        ],
    )
    .await;
    for _ in 0..3 {
        let res = app.get("/api/status").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("ratelimit-policy").is_none());
    }
}

async fn a_spoofed_x_forwarded_for_is_ignored_without_a_trusted_proxy(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_GENERAL", "2/60")]).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let res = app
            .client
            .get(app.url("/api/status"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("forwarded", format!("for=198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "every request spends the socket address's budget"
    );
}

async fn through_a_trusted_proxy_each_forwarded_client_has_its_own_budget(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_GENERAL", "2/60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let from = |xff: &'static str| {
        app.client
            .get(app.url("/api/status"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 200);
    // A client that prepends an address of its choice still spends its own budget.
    assert_eq!(from("192.0.2.99, 203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(from("203.0.113.2").await.unwrap().status(), 200);
}

async fn the_redis_backend_shares_one_budget_between_instances(backend: Backend) {
    let prefix = format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple());
    let vars = vec![
        ("RATE_LIMIT_GENERAL", "4/60"),
        ("REDIS_KEY_PREFIX", &prefix),
    ];
    let redis = redis_url();
    let mut vars = vars;
    vars.push(("REDIS_URL", &redis));
    let a = TestApp::spawn_with(backend, &vars).await;
    let b = TestApp::spawn_with(backend, &vars).await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(app.get("/api/status").await.status(), 200);
    }
    assert_problem(a.get("/api/status").await, 429).await;
    assert_problem(b.get("/api/status").await, 429).await;
    // The admin endpoint is limited too (the budget is spent), so read the counters directly.
    let limiter = &a.state.edge.limiter;
    assert_eq!(limiter.backend(), "redis");
    assert_eq!(
        limiter
            .stats
            .backend_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

async fn with_redis_unreachable_the_limiter_fails_open_and_counts_the_failure(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("RATE_LIMIT_GENERAL", "100/60"),
        ],
    )
    .await;
    let res = app.get("/api/status").await;
    assert_eq!(res.status(), 200, "open: the request is served");
    assert!(
        res.headers().get("ratelimit").is_some(),
        "per-instance limits still apply"
    );
    let report = app.admin_get("/api/admin/rate-limits").await;
    assert!(report["backend_errors"].as_u64().unwrap() >= 1, "{report}");
}

async fn with_redis_unreachable_and_failing_closed_limited_routes_answer_503(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("RATE_LIMIT_FAIL_MODE", "closed"),
        ],
    )
    .await;
    let res = app.get("/api/status").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 503).await;
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "exempt routes still answer"
    );
}

async fn the_ai_policy_limits_each_user_separately(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_AI", "2/60,3/3600")]).await;
    let edge = &app.state.edge;
    let Admission::Allowed(first) = edge.check_user("user-a").await else {
        panic!("the first request is admitted");
    };
    assert_eq!(
        first.0["ratelimit-policy"],
        r#""ai-60s";q=2;w=60, "ai-3600s";q=3;w=3600"#
    );
    assert!(matches!(
        edge.check_user("user-a").await,
        Admission::Allowed(_)
    ));
    match edge.check_user("user-a").await {
        Admission::Refused {
            retry_after,
            policies,
            ..
        } => {
            assert_eq!(retry_after, 30);
            assert_eq!(policies, vec!["ai-60s".to_owned()]);
        }
        other => panic!("the third in a minute is refused, got {other:?}"),
    }
    let refused = edge.check_user("user-a").await.into_response().unwrap_err();
    assert_eq!(
        refused.status(),
        429,
        "the standard answer is a 429 problem"
    );
    assert_eq!(refused.headers()["retry-after"], "30");
    assert!(
        matches!(edge.check_user("user-b").await, Admission::Allowed(_)),
        "another user has a budget of its own"
    );
}

async fn the_admin_endpoints_refuse_anonymous_callers_and_non_admins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_problem(app.get("/api/admin/rate-limits").await, 401).await;
    let customer = crate::auth_helpers::register_customer(&app).await;
    for path in ["/api/admin/rate-limits", "/api/admin/bans"] {
        let res = crate::auth_helpers::get_authed(&app, path, &customer.access).await;
        assert_problem(res, 403).await;
    }
    let forged = app
        .client
        .get(app.url("/api/admin/bans"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_problem(forged, 401).await;
    let report = app.admin_get("/api/admin/rate-limits").await;
    assert!(report["policies"].is_array(), "{report}");
}

async fn the_auth_policy_also_limits_each_target_account_across_client_addresses(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_AUTH", "3/60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let login = |ip: String, email: &'static str| {
        app.client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&serde_json::json!({"email": email, "password": "wrong-password-123"}))
            .send()
    };
    // Three guesses at one account from three addresses: each address is well within its budget.
    for i in 1..=3 {
        let res = login(format!("198.51.100.{i}"), "Target@Example.test")
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "guess {i}");
    }
    // The fourth, from a fresh address and with the email spelt differently, meets the
    // account's budget.
    let refused = login("198.51.100.4".into(), " target@example.test")
        .await
        .unwrap();
    assert!(refused.headers().get("retry-after").is_some());
    assert_problem(refused, 429).await;
    // Another account is not affected.
    let other = login("198.51.100.5".into(), "someone-else@example.test")
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
}

/// Regression: the Redis script counted in milliseconds, so any quota above 1000 requests per
/// second per key was silently cut to 1000 per second (a burst of 1000 instead of 3000 here).
async fn the_redis_backend_keeps_quotas_above_a_thousand_per_second_exact(backend: Backend) {
    let prefix = format!("autorisen-test:{}:", uuid::Uuid::new_v4().simple());
    let redis = redis_url();
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_GENERAL", "3000/1"),
            ("REDIS_URL", &redis),
            ("REDIS_KEY_PREFIX", &prefix),
        ],
    )
    .await;
    let res = app.get("/api/status").await;
    assert_eq!(res.status(), 200);
    let state = TestApp::header(&res, "ratelimit");
    let remaining: u64 = state
        .split(";r=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no r in {state}"));
    assert!((2990..=3010).contains(&remaining), "{state}");
    assert_eq!(app.state.edge.limiter.backend(), "redis");
    // The memory fallback would answer the same numbers. Every check that Redis did not answer
    // is counted as a backend error (and then decided in memory), so none means Redis decided.
    // (The key itself is gone by now: at 3000/s its budget is full again within a millisecond,
    // and the limiter lets such keys expire.)
    let errors = app
        .state
        .edge
        .limiter
        .stats
        .backend_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(errors, 0, "Redis answered every check");
}

/// Issue 15, point 10: one /48 holds 65,536 /64s, each its own client; their aggregate is capped.
async fn the_ipv6_clients_of_one_48_share_an_aggregate_budget(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_GENERAL", "5/60"),
            ("RATE_LIMIT_IPV6_48", "8/60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let from = |ip: &'static str| {
        app.client
            .get(app.url("/api/status"))
            .header("x-forwarded-for", ip)
            .send()
    };
    // Five from one /64 (its own budget), three from another /64 of the same /48 ...
    for _ in 0..5 {
        assert_eq!(from("2001:db8:aa:1::7").await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(from("2001:db8:aa:2::7").await.unwrap().status(), 200);
    }
    // ... spend the /48's eight: a third /64 is refused though its own budget is untouched.
    let refused = from("2001:db8:aa:3::7").await.unwrap();
    let policy = refused.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("general-ipv6-48"), "{policy}");
    assert_problem(refused, 429).await;
    // Another /48, and IPv4 clients, are not affected.
    assert_eq!(from("2001:db8:bb:1::7").await.unwrap().status(), 200);
    assert_eq!(from("198.51.100.9").await.unwrap().status(), 200);
    let report = app.admin_get("/api/admin/rate-limits").await;
    let aggregate = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "general-ipv6-48")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(aggregate["refused"], 1, "{aggregate}");
}
