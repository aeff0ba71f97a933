//! The assistant's knowledge base (admin CRUD, chunks, search) and the shipped help, over HTTP on
//! both databases. Threads and messages are in `assistant_threads.rs`, the evaluation over the
//! shipped help in `assistant_eval.rs`.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    an_admin_adds_reads_changes_lists_and_deletes_a_document_and_each_change_is_audited,
    only_admins_manage_the_knowledge_base,
    invalid_documents_are_refused_naming_every_field_and_nothing_is_stored,
    a_document_of_a_million_characters_is_taken_whole_beyond_the_default_body_limit,
    a_long_document_is_split_into_overlapping_chunks_and_its_last_passage_is_found,
    search_ranks_the_document_about_the_words_first_and_quotes_its_text,
    hostile_search_queries_are_answered_without_a_server_error,
    the_shipped_help_is_loaded_once_however_often_the_app_starts_on_the_database,
    an_edit_of_a_shipped_article_survives_a_restart,
    the_openapi_document_states_the_assistants_rules,
);

/// `method path` as the app's operator (an admin made without HTTP), with an optional body.
pub async fn as_admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let token = app.admin_token().await;
    let req = authed(app, method, path, &token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    req.send().await.unwrap()
}

/// Adds a document as the operator; its view.
pub async fn add_document(app: &TestApp, title: &str, body: &str, tags: &[&str]) -> Value {
    let doc = json!({"title": title, "body": body, "tags": tags});
    let res = as_admin(app, Method::POST, "/api/admin/knowledge", Some(doc)).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// `GET /api/assistant/search?q=` as `token`, expecting 200.
pub async fn search(app: &TestApp, token: &str, q: &str) -> Vec<Value> {
    let res = app
        .client
        .get(app.url("/api/assistant/search"))
        .query(&[("q", q)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{q:?}");
    res.json().await.unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn an_admin_adds_reads_changes_lists_and_deletes_a_document_and_each_change_is_audited(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let doc = add_document(
        &app,
        "Loadshedding",
        "Agents keep running during loadshedding.",
        &["power"],
    )
    .await;
    let id = doc["id"].as_str().unwrap();
    assert_eq!(doc["title"], "Loadshedding");
    assert_eq!(doc["tags"], json!(["power"]));
    assert_eq!(doc["chunks"], 1);
    assert_eq!(doc["slug"], Value::Null);

    let path = format!("/api/admin/knowledge/{id}");
    let read: Value = as_admin(&app, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["body"], "Agents keep running during loadshedding.");

    let patch = json!({"title": "Power cuts", "body": null});
    let res = as_admin(&app, Method::PATCH, &path, Some(patch)).await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["title"], "Power cuts");
    assert_eq!(
        changed["body"], "Agents keep running during loadshedding.",
        "null keeps it"
    );
    assert_eq!(changed["tags"], json!(["power"]));

    let list: Value = as_admin(&app, Method::GET, "/api/admin/knowledge?per_page=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["per_page"], 1);
    assert_eq!(list["items"][0]["id"], id, "latest changed first: {list}");
    assert!(
        list["items"][0].get("body").is_none(),
        "lists leave the text out"
    );
    assert!(
        list["total"].as_u64().unwrap() > 1,
        "the shipped help is listed too"
    );

    let res = as_admin(&app, Method::DELETE, &path, None).await;
    assert_eq!(res.status(), 204);
    assert_problem(as_admin(&app, Method::GET, &path, None).await, 404).await;
    assert_problem(as_admin(&app, Method::DELETE, &path, None).await, 404).await;
    let chunks: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM knowledge_chunks WHERE document_id = $1")
            .bind(id.to_owned())
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get("n");
    assert_eq!(chunks, 0);
    let user = register_customer(&app).await;
    assert!(
        search(&app, &user.access, "loadshedding").await.is_empty(),
        "gone from the index"
    );

    let actions: Vec<String> = audit_actions(&app, id)
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(
        actions,
        [
            "knowledge_document_created",
            "knowledge_document_updated",
            "knowledge_document_deleted"
        ]
    );
}

async fn only_admins_manage_the_knowledge_base(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let customer = register_customer(&app).await;
    let developer = register_developer(&app).await;
    let doc = add_document(&app, "Secret plans", "Nothing here.", &[]).await;
    let path = format!("/api/admin/knowledge/{}", doc["id"].as_str().unwrap());
    for token in [&customer.access, &developer.access] {
        let body = json!({"title": "Mine", "body": "Mine."});
        let res = post_authed(&app, "/api/admin/knowledge", token, &body).await;
        assert_problem(res, 403).await;
        assert_problem(get_authed(&app, "/api/admin/knowledge", token).await, 403).await;
        let res = authed(&app, Method::DELETE, &path, token)
            .send()
            .await
            .unwrap();
        assert_problem(res, 403).await;
        let res = authed(&app, Method::PATCH, &path, token)
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403).await;
    }
    assert_problem(app.get("/api/admin/knowledge").await, 401).await;
    assert_problem(app.get("/api/assistant/search?q=plans").await, 401).await;
    let read: Value = as_admin(&app, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["title"], "Secret plans", "unchanged");
}

async fn invalid_documents_are_refused_naming_every_field_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = count(&app, "knowledge_documents").await;
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let cases = [
        (json!({"title": "", "body": "x"}), vec!["title"]),
        (json!({"title": "T", "body": ""}), vec!["body"]),
        (
            json!({"title": "Bell\u{7}", "body": "x", "tags": too_many}),
            vec!["title", "tags"],
        ),
        (
            json!({"title": "T", "body": "x", "tags": [" "]}),
            vec!["tags[0]"],
        ),
        (json!({"title": "T", "body": "x", "author": "me"}), vec![""]),
        (json!({"title": "T"}), vec![""]),
    ];
    for (body, fields) in cases {
        let res = as_admin(
            &app,
            Method::POST,
            "/api/admin/knowledge",
            Some(body.clone()),
        )
        .await;
        let problem = assert_problem(res, 422).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        if fields != [""] {
            assert_eq!(named, fields, "{body}");
        }
    }
    let long = "a".repeat(1_000_001);
    let res = as_admin(
        &app,
        Method::POST,
        "/api/admin/knowledge",
        Some(json!({"title": "T", "body": long})),
    )
    .await;
    let problem = assert_problem(res, 422).await;
    assert_eq!(problem["errors"][0]["field"], "body");
    assert_eq!(count(&app, "knowledge_documents").await, before);
    let res = as_admin(
        &app,
        Method::PATCH,
        "/api/admin/knowledge/not-an-id",
        Some(json!({})),
    )
    .await;
    assert_problem(res, 404).await;
}

async fn a_document_of_a_million_characters_is_taken_whole_beyond_the_default_body_limit(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    // Two bytes of UTF-8 each: about 2 MB of JSON, over the default 1 MiB.
    let sentence = "Ébène é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é é. ";
    let n = sentence.chars().count();
    let mut body = sentence.repeat(1_000_000 / n);
    while body.chars().count() < 1_000_000 {
        body.push('é');
    }
    assert_eq!(body.chars().count(), 1_000_000);
    let doc = add_document(&app, "Big", &body, &[]).await;
    let id = doc["id"].as_str().unwrap();
    assert!(doc["chunks"].as_i64().unwrap() > 600, "{}", doc["chunks"]);
    let read: Value = as_admin(
        &app,
        Method::GET,
        &format!("/api/admin/knowledge/{id}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(read["body"].as_str().unwrap().chars().count(), 1_000_000);
}

async fn a_long_document_is_split_into_overlapping_chunks_and_its_last_passage_is_found(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let mut paragraphs: Vec<String> = (0..40)
        .map(|i| {
            format!("Paragraph {i} explains how agents queue their work. It has two sentences.")
        })
        .collect();
    paragraphs.push("The final paragraph mentions the zebrafish migration.".into());
    let body = paragraphs.join("\n\n");
    let doc = add_document(&app, "Queues", &body, &[]).await;
    let id = doc["id"].as_str().unwrap();
    let n = doc["chunks"].as_i64().unwrap();
    assert!(n >= 2, "{n} chunks for {} characters", body.len());
    let rows = sqlx::query(
        "SELECT content FROM knowledge_chunks WHERE document_id = $1 ORDER BY position",
    )
    .bind(id.to_owned())
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let chunks: Vec<String> = rows.iter().map(|r| r.get("content")).collect();
    assert_eq!(chunks.len() as i64, n);
    for pair in chunks.windows(2) {
        assert!(pair[0].chars().count() <= 1600);
        // The next repeats the end of this one: whole sentences, at most 200 characters.
        let overlap = (1..=pair[1].len())
            .rev()
            .filter(|n| pair[1].is_char_boundary(*n))
            .map(|n| &pair[1][..n])
            .find(|p| pair[0].ends_with(p))
            .unwrap_or_default();
        assert!(
            overlap.len() >= 20 && overlap.chars().count() <= 200,
            "{overlap:?}"
        );
        assert!(overlap.ends_with('.'), "{overlap:?}");
        assert!(
            overlap.starts_with("Paragraph") || overlap.starts_with("It has"),
            "{overlap:?}"
        );
    }
    let user = register_customer(&app).await;
    let hits = search(&app, &user.access, "zebrafish").await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["source_id"], id);
    assert_eq!(hits[0]["title"], "Queues");
    let snippet = hits[0]["snippet"].as_str().unwrap();
    assert!(snippet.contains("zebrafish"), "{snippet}");
    assert!(chunks.last().unwrap().contains(snippet));
}

async fn search_ranks_the_document_about_the_words_first_and_quotes_its_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let about = add_document(
        &app,
        "Solar inverters",
        "Solar inverters convert power from panels. Our inverter agents watch solar inverters.",
        &["solar"],
    )
    .await;
    let mention = add_document(
        &app,
        "Weather",
        "Rain and wind forecasts. Clouds reduce what solar panels make.",
        &[],
    )
    .await;
    let user = register_customer(&app).await;
    let hits = search(&app, &user.access, "How do solar inverters work?").await;
    let sources: Vec<&str> = hits
        .iter()
        .map(|h| h["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources.first(),
        Some(&about["id"].as_str().unwrap()),
        "{hits:?}"
    );
    assert!(
        sources.contains(&mention["id"].as_str().unwrap()),
        "{hits:?}"
    );
    for h in &hits {
        assert!(h["chunk_id"].is_string());
    }
    assert!(hits[0]["snippet"].as_str().unwrap().contains("inverter"));
    // Stems: the plural finds the singular.
    let hits = search(&app, &user.access, "forecast").await;
    assert_eq!(hits[0]["source_id"], mention["id"]);
}

async fn hostile_search_queries_are_answered_without_a_server_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    for q in [
        "\"",
        "*",
        "NEAR(",
        "AND OR",
        "'",
        "\\",
        "🙂",
        "\"plans\" AND",
        "pro*",
        "-pro",
        "a:b",
        "(((",
        "^pro",
        "NOT",
        "pro NEAR(plans, 2)",
        "'; DROP TABLE users; --",
        "%_",
        "\u{0301}",
        "plans | !pro & <->",
        "\u{00e9}t\u{00e9}",
    ] {
        let res = app
            .client
            .get(app.url("/api/assistant/search"))
            .query(&[("q", q)])
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{q:?}");
    }
    // Operators are words: `pro*` is a search for "pro".
    let hits = search(&app, &user.access, "pro*").await;
    assert!(!hits.is_empty());
    for (q, status) in [("", 422), ("a\u{0}b", 422)] {
        let res = app
            .client
            .get(app.url("/api/assistant/search"))
            .query(&[("q", q)])
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, status).await;
    }
    let res = get_authed(&app, "/api/assistant/search", &user.access).await;
    assert_problem(res, 422).await;
    let long = "x".repeat(501);
    let res = get_authed(
        &app,
        &format!("/api/assistant/search?q={long}"),
        &user.access,
    )
    .await;
    assert_problem(res, 422).await;
}

async fn the_shipped_help_is_loaded_once_however_often_the_app_starts_on_the_database(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let vars = base_vars(&db);
    let first = TestApp::start(backend, db, config_from(&vars)).await;
    let documents = count(&first, "knowledge_documents").await;
    let chunks = count(&first, "knowledge_chunks").await;
    let shipped = autorisen::domains::assistant::help::HELP.len() as i64;
    assert_eq!(documents, shipped);
    assert!(chunks >= shipped);
    // A second instance on the same database, and the start hook run again by hand, at once.
    let second = autorisen::app::App::build(config_from(&vars))
        .await
        .unwrap();
    let state = second.state().clone();
    let (a, b) = tokio::join!(
        autorisen::domains::assistant::knowledge::load_help(&state),
        autorisen::domains::assistant::knowledge::load_help(&first.state),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (0, 0), "nothing to write");
    assert_eq!(count(&first, "knowledge_documents").await, documents);
    assert_eq!(count(&first, "knowledge_chunks").await, chunks);
    let slugs: Vec<String> =
        sqlx::query("SELECT slug FROM knowledge_documents WHERE slug IS NOT NULL")
            .fetch_all(first.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("slug"))
            .collect();
    assert_eq!(slugs.len() as i64, shipped);
    if backend == Backend::Sqlite {
        let indexed = count(&first, "knowledge_fts").await;
        assert_eq!(indexed, chunks, "one index row per chunk");
    }
    // Two instances loading into an empty knowledge base at the same moment write each article
    // once between them.
    let pool = first.state.db.pool();
    for sql in [
        "DELETE FROM knowledge_chunks WHERE document_id IN \
         (SELECT id FROM knowledge_documents WHERE slug IS NOT NULL)",
        "DELETE FROM knowledge_documents WHERE slug IS NOT NULL",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let (a, b) = tokio::join!(
        autorisen::domains::assistant::knowledge::load_help(&state),
        autorisen::domains::assistant::knowledge::load_help(&first.state),
    );
    assert_eq!(a.unwrap() + b.unwrap(), shipped as usize);
    assert_eq!(count(&first, "knowledge_documents").await, documents);
    assert_eq!(count(&first, "knowledge_chunks").await, chunks);
}

async fn an_edit_of_a_shipped_article_survives_a_restart(backend: Backend) {
    let db = TestDb::create(backend).await;
    let vars = base_vars(&db);
    let app = TestApp::start(backend, db, config_from(&vars)).await;
    let id: String = sqlx::query("SELECT id FROM knowledge_documents WHERE slug = 'credits'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("id");
    let path = format!("/api/admin/knowledge/{id}");
    let patch = json!({"body": "Credits are paused during the audit."});
    assert_eq!(
        as_admin(&app, Method::PATCH, &path, Some(patch))
            .await
            .status(),
        200
    );
    let again = autorisen::app::App::build(config_from(&vars))
        .await
        .unwrap();
    drop(again);
    let read: Value = as_admin(&app, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["body"], "Credits are paused during the audit.");
    assert_eq!(read["slug"], "credits");
}

async fn the_openapi_document_states_the_assistants_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let q = &spec["paths"]["/api/assistant/search"]["get"]["parameters"][0];
    assert_eq!((&q["name"], &q["required"]), (&json!("q"), &json!(true)));
    assert_eq!(q["schema"]["maxLength"], 500);
    let schemas = &spec["components"]["schemas"];
    for name in [
        "NewDocument",
        "DocumentPatch",
        "NewThread",
        "NewMessage",
        "CompatChat",
    ] {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    assert_eq!(
        schemas["NewMessage"]["properties"]["content"]["maxLength"],
        8000
    );
    assert_eq!(schemas["NewDocument"]["properties"]["tags"]["maxItems"], 20);
    let op = &spec["paths"]["/api/assistant/threads/{id}/messages"]["post"];
    assert_eq!(op["tags"], json!(["assistant"]));
    assert!(op["responses"]["429"]["description"]
        .as_str()
        .unwrap()
        .contains("plan-limit"));
}
