//! The assistant's threads and messages, the built-in provider's answers, the plan quota and the
//! `ai` rate limit, and the production client's chat route, over HTTP on both databases.

use autorisen::domains::billing::{quota, types::Counter};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    auth_helpers::*,
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    how_much_is_pro_is_answered_with_r529_and_a_citation_quoting_the_plans_article,
    a_question_with_no_match_is_answered_plainly_that_nothing_was_found,
    another_users_thread_is_not_found_for_reading_writing_or_deleting,
    threads_are_started_listed_paged_read_and_deleted_with_their_messages,
    a_message_of_8001_characters_is_refused_and_nothing_is_stored,
    a_message_over_the_plans_monthly_limit_is_a_plan_limit_problem_and_nothing_is_stored,
    messages_over_the_ai_rate_limit_are_refused_per_user,
    the_production_clients_chat_route_answers_in_one_thread_per_user,
    usage_counts_this_months_messages_with_no_tokens_for_the_builtin_provider,
    a_message_whose_answer_cannot_be_stored_gives_its_plan_use_back,
);

/// Starts a thread as `token`; its id.
pub async fn new_thread(app: &TestApp, token: &str, body: Value) -> String {
    let res = post_authed(app, "/api/assistant/threads", token, &body).await;
    assert_eq!(res.status(), 201);
    let t: Value = res.json().await.unwrap();
    t["id"].as_str().unwrap().to_owned()
}

/// Asks `question` in `thread` as `token`, expecting 201; the exchange.
pub async fn ask(app: &TestApp, token: &str, thread: &str, question: &str) -> Value {
    let path = format!("/api/assistant/threads/{thread}/messages");
    let res = post_authed(app, &path, token, &json!({"content": question})).await;
    assert_eq!(res.status(), 201, "{question}");
    res.json().await.unwrap()
}

/// The text of the passage a citation names.
pub async fn passage(app: &TestApp, chunk: &str) -> String {
    sqlx::query("SELECT content FROM knowledge_chunks WHERE id = $1")
        .bind(chunk.to_owned())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("content")
}

async fn messages_of(app: &TestApp, thread: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM assistant_messages WHERE thread_id = $1")
        .bind(thread.to_owned())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn how_much_is_pro_is_answered_with_r529_and_a_citation_quoting_the_plans_article(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({"placement": "billing"})).await;
    let ex = ask(&app, &user.access, &thread, "How much is Pro?").await;
    assert_eq!(ex["user_message"]["content"], "How much is Pro?");
    assert_eq!(ex["user_message"]["role"], "user");
    let answer = &ex["assistant_message"];
    let content = answer["content"].as_str().unwrap();
    assert!(content.contains("R529"), "{content}");
    assert_eq!(answer["provider"], "builtin");
    assert!(answer["model"].is_string());
    assert_eq!(answer["status"], "completed");
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 0, "output_tokens": 0})
    );
    let citation = &answer["citations"][0];
    assert_eq!(citation["title"], "Plans and prices");
    let slug: String = sqlx::query("SELECT slug FROM knowledge_documents WHERE id = $1")
        .bind(citation["source_id"].as_str().unwrap().to_owned())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get("slug");
    assert_eq!(slug, "plans");
    for c in answer["citations"].as_array().unwrap() {
        let text = passage(&app, c["chunk_id"].as_str().unwrap()).await;
        let snippet = c["snippet"].as_str().unwrap();
        assert!(!snippet.is_empty());
        assert!(text.contains(snippet), "{snippet:?} is in its passage");
    }
    assert!(citation["snippet"].as_str().unwrap().contains("R529"));
    // Stored: the thread reads back the same two messages.
    let detail = get_json(
        &app,
        &format!("/api/assistant/threads/{thread}"),
        &user.access,
    )
    .await;
    assert_eq!(detail["placement"], "billing");
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], ex["user_message"]["id"]);
    assert_eq!(messages[1]["citations"], answer["citations"]);
}

async fn a_question_with_no_match_is_answered_plainly_that_nothing_was_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    for question in ["Do you sell xylophones?", "?!", "   "] {
        let ex = ask(&app, &user.access, &thread, question).await;
        let answer = &ex["assistant_message"];
        assert!(
            answer["content"]
                .as_str()
                .unwrap()
                .starts_with("I could not find anything"),
            "{answer}"
        );
        assert_eq!(answer["citations"], json!([]));
    }
}

async fn another_users_thread_is_not_found_for_reading_writing_or_deleting(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = register_customer(&app).await;
    let other = register_customer(&app).await;
    let thread = new_thread(&app, &owner.access, json!({"title": "Mine"})).await;
    ask(&app, &owner.access, &thread, "What are credits?").await;
    let path = format!("/api/assistant/threads/{thread}");
    let missing = format!("/api/assistant/threads/{}", uuid::Uuid::new_v4());
    for p in [&path, &missing] {
        assert_problem(get_authed(&app, p, &other.access).await, 404).await;
        let res = authed(&app, Method::DELETE, p, &other.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, 404).await;
        let res = post_authed(
            &app,
            &format!("{p}/messages"),
            &other.access,
            &json!({"content": "hi"}),
        )
        .await;
        assert_problem(res, 404).await;
    }
    assert_problem(
        get_authed(&app, "/api/assistant/threads/not-a-uuid", &other.access).await,
        404,
    )
    .await;
    let list = get_json(&app, "/api/assistant/threads", &other.access).await;
    assert_eq!(list["total"], 0);
    assert_eq!(messages_of(&app, &thread).await, 2, "untouched");
    let used = quota::usage(&app.state, &other.user_id).await.unwrap();
    assert_eq!(
        used.counters.assistant_messages.used, 0,
        "a refused message spends nothing"
    );
}

async fn threads_are_started_listed_paged_read_and_deleted_with_their_messages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let res = post_authed(&app, "/api/assistant/threads", &user.access, &json!({})).await;
    assert_eq!(res.status(), 201);
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["title"], "New conversation");
    assert_eq!(t["placement"], "general");
    let second = new_thread(
        &app,
        &user.access,
        json!({"title": "MFA", "placement": "support"}),
    )
    .await;
    let page = get_json(&app, "/api/assistant/threads?per_page=1", &user.access).await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    for bad in [
        json!({"placement": "kitchen"}),
        json!({"title": ""}),
        json!({"title": "x", "owner": "me"}),
    ] {
        let res = post_authed(&app, "/api/assistant/threads", &user.access, &bad).await;
        assert_problem(res, 422).await;
    }
    ask(&app, &user.access, &second, "How do I turn on MFA?").await;
    let path = format!("/api/assistant/threads/{second}");
    let res = authed(&app, Method::DELETE, &path, &user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(get_authed(&app, &path, &user.access).await, 404).await;
    assert_eq!(messages_of(&app, &second).await, 0);
    let page = get_json(&app, "/api/assistant/threads", &user.access).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], t["id"]);
    let res = get_authed(&app, "/api/assistant/threads?per_page=101", &user.access).await;
    assert_problem(res, 422).await;
}

async fn a_message_of_8001_characters_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    let path = format!("/api/assistant/threads/{thread}/messages");
    for bad in [
        json!({"content": "é".repeat(8001)}),
        json!({"content": ""}),
        json!({"content": "bell\u{7}"}),
        json!({"content": "hi", "model": "gpt"}),
        json!({}),
    ] {
        let res = post_authed(&app, &path, &user.access, &bad).await;
        assert_problem(res, 422).await;
    }
    assert_eq!(messages_of(&app, &thread).await, 0);
    let used = quota::usage(&app.state, &user.user_id).await.unwrap();
    assert_eq!(used.counters.assistant_messages.used, 0);
    // 8000 characters are taken whole, never truncated.
    let full = format!("plans {}", "é".repeat(7994));
    assert_eq!(full.chars().count(), 8000);
    let ex = ask(&app, &user.access, &thread, &full).await;
    assert_eq!(ex["user_message"]["content"], full);
}

async fn a_message_over_the_plans_monthly_limit_is_a_plan_limit_problem_and_nothing_is_stored(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    ask(&app, &user.access, &thread, "What does Enterprise cost?").await;
    quota::consume(&app.state, &user.user_id, Counter::AssistantMessages, 49)
        .await
        .unwrap();
    let path = format!("/api/assistant/threads/{thread}/messages");
    let res = post_authed(&app, &path, &user.access, &json!({"content": "And Pro?"})).await;
    assert!(TestApp::header(&res, "retry-after").parse::<u64>().unwrap() > 0);
    let problem = assert_problem(res, 429).await;
    assert_eq!(problem["type"], "/problems/plan-limit");
    assert_eq!(problem["counter"], "assistant_messages");
    assert_eq!(
        (problem["limit"].as_i64(), problem["used"].as_i64()),
        (Some(50), Some(50))
    );
    assert_eq!(
        messages_of(&app, &thread).await,
        2,
        "only the first exchange"
    );
    let res = post_authed(
        &app,
        "/api/cape_ai/chat",
        &user.access,
        &json!({"message": "Pro?"}),
    )
    .await;
    assert_eq!(
        assert_problem(res, 429).await["type"],
        "/problems/plan-limit"
    );
    let stored: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM assistant_messages WHERE user_id = $1")
            .bind(user.user_id.clone())
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get("n");
    assert_eq!(stored, 2);
}

async fn messages_over_the_ai_rate_limit_are_refused_per_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_AI", "2/60")]).await;
    let user = register_customer(&app).await;
    let other = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    ask(&app, &user.access, &thread, "plans").await;
    ask(&app, &user.access, &thread, "credits").await;
    let path = format!("/api/assistant/threads/{thread}/messages");
    let res = post_authed(&app, &path, &user.access, &json!({"content": "refunds"})).await;
    assert!(!TestApp::header(&res, "retry-after").is_empty());
    let problem = assert_problem(res, 429).await;
    assert_eq!(problem["type"], "/problems/too-many-requests");
    assert_eq!(messages_of(&app, &thread).await, 4);
    let used = quota::usage(&app.state, &user.user_id).await.unwrap();
    assert_eq!(
        used.counters.assistant_messages.used, 2,
        "a refused message spends no quota"
    );
    // The budget is per user: another user from the same address still gets answers.
    let theirs = new_thread(&app, &other.access, json!({})).await;
    ask(&app, &other.access, &theirs, "plans").await;
}

async fn the_production_clients_chat_route_answers_in_one_thread_per_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let body = json!({"message": "How much is Pro?", "context": {"page": "/billing"}});
    let res = post_authed(&app, "/api/cape_ai/chat", &user.access, &body).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert!(
        first["response"].as_str().unwrap().contains("R529"),
        "{first}"
    );
    assert_eq!(first["provider"], "builtin");
    assert!(first["model"].is_string());
    let res = post_authed(
        &app,
        "/api/cape_ai/chat",
        &user.access,
        &json!({"message": "And MFA?"}),
    )
    .await;
    let second: Value = res.json().await.unwrap();
    assert_eq!(
        second["thread_id"], first["thread_id"],
        "one thread per user"
    );
    let thread = first["thread_id"].as_str().unwrap();
    assert_eq!(messages_of(&app, thread).await, 4);
    let detail = get_json(
        &app,
        &format!("/api/assistant/threads/{thread}"),
        &user.access,
    )
    .await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 4);
    for bad in [
        json!({"message": ""}),
        json!({"message": "hi", "context": "billing"}),
        json!({"message": "hi", "extra": 1}),
        json!({"message": "x".repeat(8001)}),
    ] {
        let res = post_authed(&app, "/api/cape_ai/chat", &user.access, &bad).await;
        assert_problem(res, 422).await;
    }
    assert_problem(
        app.post_json("/api/cape_ai/chat", &json!({"message": "hi"}))
            .await,
        401,
    )
    .await;
    // Deleting it starts a new one at the next message.
    let res = authed(
        &app,
        Method::DELETE,
        &format!("/api/assistant/threads/{thread}"),
        &user.access,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    let res = post_authed(
        &app,
        "/api/cape_ai/chat",
        &user.access,
        &json!({"message": "credits"}),
    )
    .await;
    let third: Value = res.json().await.unwrap();
    assert_ne!(third["thread_id"], first["thread_id"]);
}

async fn usage_counts_this_months_messages_with_no_tokens_for_the_builtin_provider(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    ask(&app, &user.access, &thread, "refunds").await;
    ask(&app, &user.access, &thread, "invoices").await;
    let usage = get_json(&app, "/api/assistant/usage", &user.access).await;
    assert_eq!(usage["messages"], 2, "{usage}");
    assert_eq!(usage["limit"], 50);
    assert_eq!(
        (
            &usage["input_tokens"],
            &usage["output_tokens"],
            &usage["cost_cents"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
    assert!(usage["resets_at"].is_string());
    assert_problem(app.get("/api/assistant/usage").await, 401).await;
}

async fn a_message_whose_answer_cannot_be_stored_gives_its_plan_use_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({})).await;
    ask(&app, &user.access, &thread, "plans").await;
    let pool = app.state.db.pool();
    // The messages table goes away between the claim and the storing of the answer.
    sqlx::query("ALTER TABLE assistant_messages RENAME TO assistant_messages_away")
        .execute(pool)
        .await
        .unwrap();
    let path = format!("/api/assistant/threads/{thread}/messages");
    let res = post_authed(&app, &path, &user.access, &json!({"content": "credits"})).await;
    assert_problem(res, 500).await;
    let used = quota::usage(&app.state, &user.user_id).await.unwrap();
    assert_eq!(
        used.counters.assistant_messages.used, 1,
        "the failed message's use is given back"
    );
    sqlx::query("ALTER TABLE assistant_messages_away RENAME TO assistant_messages")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(messages_of(&app, &thread).await, 2);
}
