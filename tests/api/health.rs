//! Probes, health, status and the headers every response carries.

use crate::{
    helpers::{assert_problem, redis_url, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    health_answers_ok,
    alive_answers_ok,
    ready_answers_ok_while_the_database_answers,
    ready_is_a_503_problem_once_the_database_is_gone,
    api_health_is_healthy_with_a_timed_database_check,
    api_health_is_unhealthy_and_503_once_the_database_is_gone,
    api_health_includes_redis_when_it_is_configured,
    probes_share_one_dependency_check_for_the_cache_interval,
    api_health_is_degraded_when_redis_is_unreachable,
    status_tells_version_environment_backend_and_features,
    status_tells_truthfully_which_edge_protections_are_on,
    version_json_tells_version_commit_and_build_time,
    every_response_carries_a_request_id_and_the_app_headers,
    a_sane_inbound_request_id_is_echoed_back,
    an_inbound_request_id_with_odd_characters_is_replaced,
);

async fn health_answers_ok(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
}

async fn alive_answers_ok(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/alive").await.status(), 200);
}

async fn ready_answers_ok_while_the_database_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/ready").await.status(), 200);
}

async fn ready_is_a_503_problem_once_the_database_is_gone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.state.db.close().await;
    let res = app.get("/ready").await;
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_problem(res, 503).await;
    assert!(!body.to_string().contains("sqlite") && !body.to_string().contains("127.0.0.1"));
}

async fn api_health_is_healthy_with_a_timed_database_check(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/api/health").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_s"].is_u64());
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert!(body["checks"]["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        body["checks"].get("redis").is_none(),
        "redis is not configured: {body}"
    );
}

async fn api_health_is_unhealthy_and_503_once_the_database_is_gone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.state.db.close().await;
    let res = app.get("/api/health").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["checks"]["database"]["status"], "down");
}

async fn probes_share_one_dependency_check_for_the_cache_interval(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HEALTH_CACHE_MS", "60000")]).await;
    assert_eq!(app.get("/api/health").await.status(), 200);
    app.state.db.close().await;
    // Within the interval no caller reaches the database: the last check answers.
    for path in ["/api/health", "/ready"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let fresh = TestApp::spawn_with(backend, &[("HEALTH_CACHE_MS", "0")]).await;
    assert_eq!(fresh.get("/api/health").await.status(), 200);
    fresh.state.db.close().await;
    assert_eq!(
        fresh.get("/api/health").await.status(),
        503,
        "without a cache every call checks"
    );
}

async fn api_health_includes_redis_when_it_is_configured(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REDIS_URL", &redis_url())]).await;
    let body: serde_json::Value = app.get("/api/health").await.json().await.unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "up");
}

async fn api_health_is_degraded_when_redis_is_unreachable(backend: Backend) {
    // Port 1 on loopback refuses connections at once.
    let app = TestApp::spawn_with(backend, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let res = app.get("/api/health").await;
    assert_eq!(res.status(), 200, "a degraded service still serves");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["database"]["status"], "up");
}

async fn status_tells_version_environment_backend_and_features(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, &[("APP_VERSION", "9.8.7"), ("GIT_SHA", "abc123")]).await;
    let body: serde_json::Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(body["service"], "autorisen");
    assert_eq!(body["version"], "9.8.7");
    assert_eq!(body["git_sha"], "abc123");
    assert_eq!(body["environment"], "test");
    assert!(body["build_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let server_time = body["server_time"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(server_time).is_ok(),
        "{server_time}"
    );
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
    assert_eq!(body["features"]["redis"], false, "redis is not configured");
    assert_eq!(body["features"]["web_app"], false, "no web build exists");
    assert_eq!(body["features"]["auth"], true, "identity is on");
}

async fn version_json_tells_version_commit_and_build_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("GIT_SHA", "deadbeef")]).await;
    let body: serde_json::Value = app.get("/version.json").await.json().await.unwrap();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["git_sha"], "deadbeef");
    assert!(body["build_time"].is_string());
}

async fn every_response_carries_a_request_id_and_the_app_headers(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("APP_VERSION", "1.2.3"), ("GIT_SHA", "cafe")]).await;
    for path in ["/health", "/api/health", "/api/nope", "/docs/"] {
        let res = app.get(path).await;
        let h = res.headers();
        let id = h.get("x-request-id").expect("request id").to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
        assert_eq!(h["x-app-version"], "1.2.3", "{path}");
        assert_eq!(h["x-app-commit"], "cafe", "{path}");
        assert_eq!(h["x-app-env"], "test", "{path}");
    }
}

async fn a_sane_inbound_request_id_is_echoed_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(app.url("/api/nope"))
        .header("x-request-id", "edge-1234.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "edge-1234.abc");
    let body = assert_problem(res, 404).await;
    assert_eq!(body["request_id"], "edge-1234.abc");
}

async fn an_inbound_request_id_with_odd_characters_is_replaced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "replaced by a generated id: {id}"
    );
}

async fn status_tells_truthfully_which_edge_protections_are_on(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", "https://app.example.test")]).await;
    let body: serde_json::Value = app.get("/api/status").await.json().await.unwrap();
    let f = &body["features"];
    assert_eq!(f["rate_limiting"], true, "{f}");
    assert_eq!(f["hsts"], false, "the public URL is not https");
    assert_eq!(f["cors"], true, "{f}");
    assert_eq!(f["abuse_bans"], true, "{f}");
    assert_eq!(f["trusted_proxies"], false, "{f}");
    let off = TestApp::spawn_with(
        backend,
        &[("RATE_LIMIT_MODE", "off"), ("ABUSE_BAN_THRESHOLD", "0")],
    )
    .await;
    let body: serde_json::Value = off.get("/api/status").await.json().await.unwrap();
    assert_eq!(body["features"]["rate_limiting"], false);
    assert_eq!(body["features"]["abuse_bans"], false);
    assert_eq!(
        body["features"]["cors"], false,
        "no origins outside development"
    );
}
