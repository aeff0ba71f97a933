//! A bare axum hello-world: the ceiling `bench/run.sh` compares `/health` against.
//!
//! It runs on the same global allocator as the service (`src/main.rs`: mimalloc, built with the
//! `no_thp` feature through the shared `Cargo.toml` dependency) and the same runtime (tokio's
//! default multi-thread one), so the ratio between the two measures our code, not the allocator:
//! mimalloc alone gave `/health` about 15%.

use axum::{routing::get, Router};

/// The same allocator as the service's binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8099".into());
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}
