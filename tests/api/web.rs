//! Hosting of the built web app, and the built-in page when there is none.

use crate::{
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    without_a_web_build_the_root_is_a_page_linking_docs_and_health,
    a_web_build_is_served_at_the_root_and_never_cached,
    client_side_routes_fall_back_to_index_html,
    hashed_assets_are_cached_for_a_year,
    real_files_such_as_robots_txt_are_served_as_themselves,
    the_spa_fallback_never_swallows_api_docs_or_health_paths,
    no_redirect_leaves_the_origin_and_api_paths_in_any_spelling_get_the_apis_answer,
);

async fn without_a_web_build_the_root_is_a_page_linking_docs_and_health(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"/docs/\"") && html.contains("href=\"/api/health\""),
        "{html}"
    );
}

/// Starts the app with a small web build in a temporary folder.
async fn app_with_web_build(backend: Backend) -> TestApp {
    let dist = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>CapeControl</title><div id=root></div>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/app-3f9a1c.js"), "console.log('app')").unwrap();
    std::fs::write(dist.join("robots.txt"), "User-agent: *\nDisallow:\n").unwrap();
    TestApp::spawn_with(backend, &[("WEB_DIST_DIR", dist.to_str().unwrap())]).await
}

async fn a_web_build_is_served_at_the_root_and_never_cached(backend: Backend) {
    let app = app_with_web_build(backend).await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.text().await.unwrap().contains("CapeControl"));
    let status: serde_json::Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(status["features"]["web_app"], true);
}

async fn client_side_routes_fall_back_to_index_html(backend: Backend) {
    let app = app_with_web_build(backend).await;
    let res = app.get("/dashboard/agents/42").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.text().await.unwrap().contains("<div id=root>"));
}

async fn hashed_assets_are_cached_for_a_year(backend: Backend) {
    let app = app_with_web_build(backend).await;
    let res = app.get("/assets/app-3f9a1c.js").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(res.text().await.unwrap(), "console.log('app')");
    // A missing file with an extension is a 404, not the app shell.
    assert_problem(app.get("/assets/missing-123.js").await, 404).await;
}

async fn real_files_such_as_robots_txt_are_served_as_themselves(backend: Backend) {
    let app = app_with_web_build(backend).await;
    let res = app.get("/robots.txt").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().starts_with("User-agent"));
}

async fn the_spa_fallback_never_swallows_api_docs_or_health_paths(backend: Backend) {
    let app = app_with_web_build(backend).await;
    assert_problem(app.get("/api/unknown/thing").await, 404).await;
    assert_problem(app.get("/health/extra").await, 404).await;
    assert_eq!(app.get("/health").await.status(), 200);
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("Swagger UI"));
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.headers()["content-type"], "application/json");
}

/// Issue 15, point 7.
async fn no_redirect_leaves_the_origin_and_api_paths_in_any_spelling_get_the_apis_answer(
    backend: Backend,
) {
    let app = app_with_web_build(backend).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(app.url(path)).send();
    // `//assets` named a host `assets` in the file server's redirect.
    for path in ["//assets", "//assets/", "/assets//", "/\\assets"] {
        let res = get(path).await.unwrap();
        assert!(
            res.headers().get("location").is_none(),
            "{path}: {:?}",
            res.headers().get("location")
        );
        assert_problem(res, 404).await;
    }
    // A plain directory still redirects within the origin.
    let res = get("/assets").await.unwrap();
    if res.status().is_redirection() {
        let location = res.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{location}"
        );
    }
    for path in [
        "//api/admin/users",
        "/API/auth/me",
        "/Api/Auth/Me",
        "/api//auth/me",
        "//health",
        "/HEALTH",
        "/DOCS/",
        "//openapi.json",
        "/OpenAPI.json",
    ] {
        let res = get(path).await.unwrap();
        let body = assert_problem(res, 404).await;
        assert_eq!(body["type"], "/problems/not-found", "{path}");
    }
    // The real paths still answer.
    assert_eq!(get("/health").await.unwrap().status(), 200);
    assert_eq!(get("/api/auth/me").await.unwrap().status(), 401);
}
