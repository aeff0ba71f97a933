//! One folder per domain; each exposes `routes()` with its OpenAPI-annotated handlers.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod edge;
pub mod health;
pub mod ops;
pub mod users;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Every domain's routes, merged.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::routes())
        .merge(edge::routes())
        .merge(auth::routes())
        .merge(admin::routes())
        .merge(ops::routes())
}
