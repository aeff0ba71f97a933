//! One folder per domain; each exposes `routes()` with its OpenAPI-annotated handlers.

pub mod edge;
pub mod health;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Every domain's routes, merged.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::routes())
        .merge(edge::routes())
}
