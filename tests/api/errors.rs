//! The error model: every error is problem+json, bad input is never a 500.
//!
//! The real app answers unknown routes and wrong methods. Body-parsing, panic and timeout paths
//! are exercised on probe routes mounted inside the real layer stack, since the foundation has
//! no JSON endpoint of its own yet; they touch no database.

use std::{collections::HashMap, time::Duration};

use autorisen::{
    app::serve_router,
    error::AppError,
    http::{json::AppJson, layers},
};
use axum::{
    routing::{get, post},
    Router,
};
use serde::{Deserialize, Serialize};

use crate::{
    helpers::{assert_problem, base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    an_unknown_api_route_is_a_404_problem,
    a_wrong_method_is_a_405_problem_naming_the_allowed_methods,
    responses_are_compressed_for_clients_that_accept_gzip,
);

async fn an_unknown_api_route_is_a_404_problem(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = assert_problem(app.get("/api/does-not-exist").await, 404).await;
    assert_eq!(body["type"], "/problems/not-found");
}

async fn a_wrong_method_is_a_405_problem_naming_the_allowed_methods(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .delete(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    let allow = res.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    assert_problem(res, 405).await;
}

async fn responses_are_compressed_for_clients_that_accept_gzip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    name: String,
    age: u8,
}

/// The real layer stack around probe routes.
struct Probe {
    address: String,
    client: reqwest::Client,
    _db: TestDb,
}

impl Probe {
    async fn start() -> Self {
        let db = TestDb::create(Backend::Sqlite).await;
        let mut vars: HashMap<String, String> = base_vars(&db);
        vars.insert("REQUEST_TIMEOUT_SECONDS".into(), "1".into());
        vars.insert("MAX_BODY_BYTES".into(), "1024".into());
        let config = config_from(&vars);
        let routes = Router::new()
            .route(
                "/api/echo",
                post(|AppJson(e): AppJson<Echo>| async move { AppJson(e) }),
            )
            .route(
                "/api/invalid",
                post(|| async {
                    Err::<(), _>(AppError::Validation(vec![
                        autorisen::error::FieldError::new("email", "is not an email address"),
                        autorisen::error::FieldError::new("password", "is too short"),
                    ]))
                }),
            )
            .route(
                "/api/panic",
                get(|| async {
                    let secret = "internal-detail-xyz";
                    panic!("boom: {secret}");
                    #[allow(unreachable_code)]
                    ()
                }),
            )
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let edge = autorisen::edge::Edge::new(
            &config.edge,
            None,
            autorisen::db::Db::connect(&db.url, 1).await.unwrap(),
            autorisen::app::route_table(),
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
        Self {
            address,
            client: reqwest::Client::new(),
            _db: db,
        }
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_well_formed_json_body_is_accepted() {
    let p = Probe::start().await;
    let res = p
        .post_raw(
            "/api/echo",
            "application/json",
            r#"{"name":"Thandi","age":30}"#,
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let p = Probe::start().await;
    let res = p
        .post_raw("/api/echo", "application/json", r#"{"name": "Thandi", "#)
        .await;
    assert_problem(res, 400).await;
}

#[tokio::test]
async fn trailing_bytes_after_the_json_document_are_a_400_problem() {
    let p = Probe::start().await;
    let res = p
        .post_raw("/api/echo", "application/json", r#"{"name":"A","age":1} x"#)
        .await;
    assert_problem(res, 400).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let p = Probe::start().await;
    let res = p
        .post_raw("/api/echo", "text/plain", r#"{"name":"A","age":1}"#)
        .await;
    assert_problem(res, 415).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let p = Probe::start().await;
    let big = format!(r#"{{"name":"{}","age":1}}"#, "a".repeat(4096));
    let res = p.post_raw("/api/echo", "application/json", big).await;
    assert_problem(res, 413).await;
}

#[tokio::test]
async fn a_wrongly_typed_field_is_a_422_problem_naming_the_field() {
    let p = Probe::start().await;
    let res = p
        .post_raw(
            "/api/echo",
            "application/json",
            r#"{"name":"A","age":"old"}"#,
        )
        .await;
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "age", "{body}");
}

#[tokio::test]
async fn an_unknown_field_is_a_422_problem() {
    let p = Probe::start().await;
    let res = p
        .post_raw(
            "/api/echo",
            "application/json",
            r#"{"name":"A","age":1,"role":"admin"}"#,
        )
        .await;
    let body = assert_problem(res, 422).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("role"),
        "{body}"
    );
}

#[tokio::test]
async fn a_validation_failure_lists_every_invalid_field() {
    let p = Probe::start().await;
    let res = p.post_raw("/api/invalid", "application/json", "{}").await;
    let body = assert_problem(res, 422).await;
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, vec!["email", "password"]);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_without_internals() {
    let p = Probe::start().await;
    let res = p
        .client
        .get(format!("{}/api/panic", p.address))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 500).await;
    assert!(!body.to_string().contains("internal-detail-xyz"), "{body}");
    assert!(!body.to_string().contains("boom"), "{body}");
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_a_503_problem() {
    let p = Probe::start().await;
    let started = std::time::Instant::now();
    let res = p
        .client
        .get(format!("{}/api/slow", p.address))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at the 1 s limit"
    );
    assert_problem(res, 503).await;
}
