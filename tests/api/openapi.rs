//! The OpenAPI document and the embedded Swagger UI.

use crate::{
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    the_openapi_document_is_version_3_1_and_covers_every_route,
    every_operation_documents_its_success,
    every_operation_has_an_operation_id_of_its_own,
    the_swagger_ui_is_served_from_assets_embedded_in_the_binary,
);

/// Every route the service answers, as `(method, path)`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/alive"),
    ("get", "/ready"),
    ("get", "/api/health"),
    ("get", "/api/status"),
    ("get", "/version.json"),
    ("get", "/api/admin/rate-limits"),
    ("get", "/api/admin/bans"),
    ("post", "/api/admin/bans"),
    ("delete", "/api/admin/bans/{ip}"),
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/mfa/verify"),
    ("post", "/api/auth/refresh"),
    ("post", "/api/auth/logout"),
    ("post", "/api/auth/logout-all"),
    ("get", "/api/auth/me"),
    ("patch", "/api/auth/me"),
    ("post", "/api/auth/change-password"),
    ("get", "/api/auth/sessions"),
    ("delete", "/api/auth/sessions/{id}"),
    ("get", "/api/auth/activity"),
    ("post", "/api/auth/password-reset/request"),
    ("post", "/api/auth/password-reset/confirm"),
    ("post", "/api/auth/verify-email/request"),
    ("post", "/api/auth/verify-email/confirm"),
    ("post", "/api/auth/mfa/setup"),
    ("post", "/api/auth/mfa/enable"),
    ("post", "/api/auth/mfa/disable"),
    ("get", "/api/developer/me"),
    ("patch", "/api/developer/me"),
    ("post", "/api/auth/v2/login"),
    ("post", "/api/auth/v2/register"),
    ("post", "/api/auth/v2/logout"),
    ("post", "/api/auth/v2/logout-all"),
    ("get", "/api/user/profile"),
    ("get", "/api/auth/v2/validate-email"),
    ("post", "/api/auth/v2/validate-password"),
    ("get", "/api/admin/users"),
    ("get", "/api/admin/users/{id}"),
    ("patch", "/api/admin/users/{id}"),
    ("post", "/api/admin/users/{id}/revoke-sessions"),
    ("get", "/api/admin/audit"),
    ("get", "/api/admin/jobs"),
    ("post", "/api/admin/jobs/{id}/retry"),
    ("get", "/api/admin/jobs/schedules"),
    ("post", "/api/admin/jobs/schedules/{name}/run"),
    ("get", "/api/billing/plans"),
    ("get", "/api/billing/credit-packs"),
    ("get", "/api/billing/subscription"),
    ("post", "/api/billing/subscription"),
    ("post", "/api/billing/subscription/cancel"),
    ("post", "/api/billing/subscription/resume"),
    ("post", "/api/billing/checkout"),
    ("get", "/api/billing/invoices"),
    ("get", "/api/billing/invoices/{id}"),
    ("get", "/api/billing/credits"),
    ("get", "/api/billing/usage"),
    ("get", "/api/admin/ledger/check"),
    ("post", "/api/admin/invoices/{id}/refund"),
    ("post", "/api/payments/payfast/checkout"),
    ("post", "/api/payments/payfast/itn"),
    ("post", "/api/payments/stripe/webhook"),
    ("post", "/api/admin/knowledge"),
    ("get", "/api/admin/knowledge"),
    ("get", "/api/admin/knowledge/{id}"),
    ("patch", "/api/admin/knowledge/{id}"),
    ("delete", "/api/admin/knowledge/{id}"),
    ("get", "/api/assistant/search"),
    ("post", "/api/assistant/threads"),
    ("get", "/api/assistant/threads"),
    ("get", "/api/assistant/threads/{id}"),
    ("delete", "/api/assistant/threads/{id}"),
    ("post", "/api/assistant/threads/{id}/messages"),
    ("get", "/api/assistant/usage"),
    ("post", "/api/cape_ai/chat"),
];

async fn spec(app: &TestApp) -> serde_json::Value {
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn the_openapi_document_is_version_3_1_and_covers_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec = spec(&app).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    for (method, path) in ROUTES {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
        // And the route really answers.
        assert_ne!(app.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert!(spec["components"]["schemas"]["Problem"].is_object());
}

async fn every_operation_documents_its_success(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec = spec(&app).await;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["200"].is_object()
                    || op["responses"]["201"].is_object()
                    || op["responses"]["202"].is_object()
                    || op["responses"]["204"].is_object(),
                "{method} {path} documents its success"
            );
        }
    }
}

async fn every_operation_has_an_operation_id_of_its_own(backend: Backend) {
    // Generated clients name their methods after these; two handlers of one name in two domains
    // (`usage`) once made the document invalid.
    let app = TestApp::spawn(backend).await;
    let spec = spec(&app).await;
    let mut seen = std::collections::HashMap::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}"));
            if let Some(first) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId {id} of {method} {path} is also {first}'s");
            }
        }
    }
}

async fn the_swagger_ui_is_served_from_assets_embedded_in_the_binary(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let redirect = app.get("/docs").await;
    assert!(redirect.status().is_redirection());
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui-bundle.js"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.bytes().await.unwrap().len() > 100_000,
        "the real bundle, not a stub"
    );
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
