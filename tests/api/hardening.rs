//! Response hardening (security headers, no-store, CORS) and connection-level limits.

use std::{collections::HashMap, sync::Arc, time::Duration};

use autorisen::{app::serve_router, db::Db, edge::Edge, http::layers};
use axum::{routing::get, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    helpers::{assert_problem, base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    every_response_carries_the_security_headers,
    html_pages_get_a_content_security_policy_that_lets_the_docs_work,
    hsts_is_sent_only_when_the_public_url_is_https,
    api_and_credentialed_responses_are_never_stored,
    a_cors_preflight_from_an_allowed_origin_is_answered_with_credentials,
    a_cors_preflight_from_another_origin_gets_no_allow_origin,
    a_cross_origin_answer_exposes_the_rate_limit_headers,
    a_request_head_over_the_limit_is_refused_with_431,
    a_client_sending_its_head_too_slowly_is_disconnected,
    a_client_over_its_in_flight_cap_gets_a_429_with_retry_after,
    a_saturated_instance_sheds_load_with_a_fast_503,
);

async fn every_response_carries_the_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/health",
        "/api/status",
        "/api/nope",
        "/docs/",
        "/openapi.json",
    ] {
        let res = app.get(path).await;
        let h = |n| TestApp::header(&res, n);
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(
            h("referrer-policy"),
            "strict-origin-when-cross-origin",
            "{path}"
        );
        assert_eq!(h("cross-origin-opener-policy"), "same-origin", "{path}");
        assert_eq!(
            h("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
            "{path}"
        );
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
    let api = app.get("/api/status").await;
    assert_eq!(
        TestApp::header(&api, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
}

async fn html_pages_get_a_content_security_policy_that_lets_the_docs_work(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/docs/").await;
    let csp = TestApp::header(&res, "content-security-policy");
    let html = res.text().await.unwrap();
    // Swagger UI's page loads its scripts and styles from files, with no inline script.
    assert!(
        !html.contains("<script>") && html.contains("<script src="),
        "{html}"
    );
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
}

async fn hsts_is_sent_only_when_the_public_url_is_https(backend: Backend) {
    let http = TestApp::spawn(backend).await;
    assert!(http
        .get("/health")
        .await
        .headers()
        .get("strict-transport-security")
        .is_none());
    let https =
        TestApp::spawn_with(backend, &[("PUBLIC_BASE_URL", "https://app.example.test")]).await;
    assert_eq!(
        TestApp::header(&https.get("/health").await, "strict-transport-security"),
        "max-age=63072000; includeSubDomains"
    );
}

async fn api_and_credentialed_responses_are_never_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        TestApp::header(&app.get("/api/status").await, "cache-control"),
        "no-store"
    );
    let anonymous = app.get("/docs/swagger-ui.css").await;
    assert_eq!(TestApp::header(&anonymous, "cache-control"), "");
    let with_cookie = app
        .client
        .get(app.url("/docs/swagger-ui.css"))
        .header("cookie", "session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::header(&with_cookie, "cache-control"), "no-store");
}

const ORIGIN: &str = "https://app.example.test";

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/status"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap()
}

async fn a_cors_preflight_from_an_allowed_origin_is_answered_with_credentials(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", ORIGIN)]).await;
    let res = preflight(&app, ORIGIN).await;
    assert_eq!(res.status(), 200);
    let h = |n| TestApp::header(&res, n);
    assert_eq!(h("access-control-allow-origin"), ORIGIN);
    assert_eq!(h("access-control-allow-credentials"), "true");
    assert!(h("access-control-allow-methods").contains("POST"));
    assert!(h("access-control-allow-headers").contains("authorization"));
    assert!(h("vary").contains("origin"), "{}", h("vary"));
}

async fn a_cors_preflight_from_another_origin_gets_no_allow_origin(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", ORIGIN)]).await;
    let res = preflight(&app, "https://evil.example").await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_eq!(res.status(), 200, "answered, but without permission");
}

async fn a_cross_origin_answer_exposes_the_rate_limit_headers(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", ORIGIN)]).await;
    let res = app
        .client
        .get(app.url("/api/status"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::header(&res, "access-control-allow-origin"), ORIGIN);
    let exposed = TestApp::header(&res, "access-control-expose-headers");
    assert!(
        exposed.contains("ratelimit") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

async fn raw_request(address: &str, request: &[u8]) -> (String, Duration) {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let started = std::time::Instant::now();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

async fn a_request_head_over_the_limit_is_refused_with_431(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MAX_HEADER_BYTES", "8192")]).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (answer, _) = raw_request(&app.address, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

async fn a_client_sending_its_head_too_slowly_is_disconnected(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let (answer, took) = raw_request(&app.address, b"GET /health HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// The real layer stack around a route that holds each request until the test releases it.
struct SlowServer {
    address: String,
    entered: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<tokio::sync::Semaphore>,
    _db: TestDb,
}

async fn slow_server(backend: Backend, vars: &[(&str, &str)]) -> SlowServer {
    let db = TestDb::create(backend).await;
    let mut all: HashMap<String, String> = base_vars(&db);
    for (k, v) in vars {
        all.insert((*k).into(), (*v).into());
    }
    let config = config_from(&all);
    let database = Db::connect(&db.url, 1).await.unwrap();
    let edge = Edge::new(&config.edge, None, database, autorisen::app::route_table());
    let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let routes = Router::new().route(
        "/api/slow",
        get(move || {
            let (entered, gate) = (entered_tx.clone(), gate.clone());
            async move {
                let _ = entered.send(());
                gate.acquire().await.unwrap().forget();
                "done"
            }
        }),
    );
    let router = layers::apply(routes, &config, &edge);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_router(
        listener,
        router,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    SlowServer {
        address,
        entered,
        release,
        _db: db,
    }
}

/// One request held inside the route, then a second one, answered while the first is still
/// held (so it was refused at once, not queued); then the first is let go.
async fn one_busy_then_another(server: &mut SlowServer) -> (reqwest::Response, reqwest::Response) {
    let url = format!("{}/api/slow", server.address);
    let busy = tokio::spawn(reqwest::get(url.clone()));
    server
        .entered
        .recv()
        .await
        .expect("the first request is inside");
    let second = reqwest::get(url).await.unwrap();
    server.release.add_permits(1);
    (busy.await.unwrap().unwrap(), second)
}

async fn a_client_over_its_in_flight_cap_gets_a_429_with_retry_after(backend: Backend) {
    let mut server = slow_server(backend, &[("MAX_CONCURRENT_PER_IP", "1")]).await;
    let (busy, second) = one_busy_then_another(&mut server).await;
    assert_eq!(busy.status(), 200);
    assert_eq!(TestApp::header(&second, "retry-after"), "1");
    assert_problem(second, 429).await;
}

async fn a_saturated_instance_sheds_load_with_a_fast_503(backend: Backend) {
    let mut server = slow_server(backend, &[("MAX_IN_FLIGHT", "1")]).await;
    let (busy, second) = one_busy_then_another(&mut server).await;
    assert_eq!(busy.status(), 200);
    assert_eq!(TestApp::header(&second, "retry-after"), "1");
    assert_problem(second, 503).await;
}
