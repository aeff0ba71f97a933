//! The per-account budget of credential routes, as an [`AppError`] for the handlers.

use crate::{edge::Admission, error::AppError, state::AppState};

/// Spends one attempt against the account `key` (an email, or `mfa:<user id>`): a 429 problem
/// with `Retry-After` when the budget is spent, 503 when the shared limiter cannot be reached.
pub async fn spend(state: &AppState, key: &str) -> Result<(), AppError> {
    match state.edge.check_account(key).await {
        Admission::Allowed(_) => Ok(()),
        Admission::Refused { retry_after, .. } => Err(AppError::TooManyRequests {
            retry_after,
            detail: "Too many attempts for this account; retry later.".into(),
        }),
        Admission::Unavailable => Err(AppError::Unavailable(
            "rate limits cannot be checked".into(),
        )),
    }
}
