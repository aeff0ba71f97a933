//! Storage faults: a transaction the database ended by itself never leaves a pooled connection
//! unusable.

use serde_json::json;
use sqlx::Executor;

use crate::{
    auth_helpers::{unique_email, PASSWORD},
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(a_transaction_the_database_ended_by_itself_never_poisons_a_pooled_connection,);

/// `POST /api/auth/register` for a fresh address; the response as it is.
async fn register(app: &TestApp) -> reqwest::Response {
    app.post_json(
        "/api/auth/register",
        &json!({"email": unique_email("writer"), "password": PASSWORD,
                "first_name": "Thandi", "last_name": "Mokoena", "role": "customer"}),
    )
    .await
}

async fn a_transaction_the_database_ended_by_itself_never_poisons_a_pooled_connection(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let db = &app.state.db;
    // Every connection of the pool (4 in tests) holds a transaction that the database then ends
    // on its own, as SQLite does when a statement fails with SQLITE_FULL or SQLITE_IOERR; the
    // transactions are then dropped, as a `?` does on such an error.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tx = db.begin().await.expect("begin");
        (&mut *tx).execute("ROLLBACK").await.expect("rollback");
        held.push(tx);
    }
    drop(held);

    for round in 0..8 {
        let tx = db.begin().await.unwrap_or_else(|e| {
            panic!("begin #{round} after the database ended transactions by itself: {e}")
        });
        tx.rollback().await.expect("rollback");
    }
    for _ in 0..8 {
        assert_eq!(register(&app).await.status(), 201, "writes over HTTP");
    }
}
