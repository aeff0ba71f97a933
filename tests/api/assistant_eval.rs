//! A small evaluation of the built-in provider over the shipped help: questions as users ask
//! them, each with the article that answers it. The first citation must name that article for at
//! least nine questions in ten, on both databases.

use serde_json::json;
use sqlx::Row;

use crate::{
    assistant_threads::{ask, new_thread, passage},
    auth_helpers::*,
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(the_builtin_provider_cites_the_right_help_article_for_nine_questions_in_ten);

/// (question, slug of the article that answers it)
const QUESTIONS: &[(&str, &str)] = &[
    ("How much is Pro?", "plans"),
    ("What does the Enterprise plan cost per year?", "plans"),
    ("Is there a free plan?", "plans"),
    ("How many agent runs do I get each month?", "plans"),
    ("When do my monthly limits reset?", "plans"),
    ("Can I pay with PayFast?", "payments"),
    ("Where can I find my invoices?", "payments"),
    ("How do I get a refund?", "payments"),
    ("What happens when my card payment fails?", "payments"),
    ("What do I get with the medium credit pack?", "credits"),
    ("How do I see my credit balance?", "credits"),
    ("How do I set up two-factor authentication?", "mfa"),
    ("I lost my phone with the authenticator app", "mfa"),
    ("What are recovery codes?", "mfa"),
    ("I forgot my password", "password-reset"),
    ("How long is the reset link valid?", "password-reset"),
    ("How do I sign out of all my sessions?", "password-reset"),
    ("How do I register an account?", "registering"),
    ("My verification email link expired", "registering"),
    ("Why is my account locked?", "registering"),
    (
        "What is the difference between a customer and a developer?",
        "roles",
    ),
    ("How do I become an admin?", "roles"),
    ("How do developers earn money?", "developers"),
    (
        "Are agents reviewed before they are published in the marketplace?",
        "developers",
    ),
    ("How many assistant messages can I send?", "assistant"),
    ("Is paying yearly cheaper than monthly?", "plans"),
    ("What happens to my plan if I cancel?", "plans"),
    (
        "Can I pay by Stripe with an international card?",
        "payments",
    ),
    (
        "Will I get a reminder before my yearly renewal?",
        "payments",
    ),
    ("How much bonus credit does the large pack give?", "credits"),
    ("Which authenticator apps can I use?", "mfa"),
    ("What are the password rules?", "registering"),
    ("Can I change my role later?", "roles"),
    (
        "Do I need to set up payout details as a developer?",
        "developers",
    ),
    ("Who can see my assistant threads?", "assistant"),
];

async fn the_builtin_provider_cites_the_right_help_article_for_nine_questions_in_ten(
    backend: Backend,
) {
    // Every question in one minute: the per-user `ai` limit (30 a minute) is lifted here.
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_AI", "1000/60")]).await;
    let user = register_customer(&app).await;
    let thread = new_thread(&app, &user.access, json!({"placement": "support"})).await;
    let mut right = 0;
    let mut misses = Vec::new();
    for (question, expected) in QUESTIONS {
        let ex = ask(&app, &user.access, &thread, question).await;
        let citations = ex["assistant_message"]["citations"]
            .as_array()
            .unwrap()
            .clone();
        let cited = match citations.first() {
            Some(c) => {
                let text = passage(&app, c["chunk_id"].as_str().unwrap()).await;
                assert!(text.contains(c["snippet"].as_str().unwrap()), "{question}");
                sqlx::query("SELECT slug FROM knowledge_documents WHERE id = $1")
                    .bind(c["source_id"].as_str().unwrap().to_owned())
                    .fetch_one(app.state.db.pool())
                    .await
                    .unwrap()
                    .get::<Option<String>, _>("slug")
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        if cited == *expected {
            right += 1;
        } else {
            misses.push(format!(
                "{question:?}: cited {cited:?}, expected {expected:?}"
            ));
        }
    }
    assert!(QUESTIONS.len() >= 20);
    assert!(
        right * 10 >= QUESTIONS.len() * 9,
        "{right} of {} right; misses: {misses:#?}",
        QUESTIONS.len()
    );
    if !misses.is_empty() {
        eprintln!(
            "{backend:?}: {right}/{} right; misses: {misses:#?}",
            QUESTIONS.len()
        );
    }
}
