//! The auth domain's upkeep: idle guess budgets (most of them unknown emails') and expired MFA
//! challenges are deleted every quarter hour, so neither table grows with the request rate.

use serde_json::json;

use crate::{
    jobs::{from_fn, Every, JobError, Registry, Schedule},
    state::LateState,
};

/// The kind (and schedule) that prunes guess budgets and MFA challenges.
pub const PRUNE: &str = "auth.prune";

/// Registers the reset-request job and the prune job (run every 15 minutes).
pub fn register(registry: &mut Registry, state: &LateState) {
    let reset_state = state.clone();
    registry.register(
        super::links::RESET_JOB,
        from_fn(move |job| {
            let state = reset_state.clone();
            async move {
                let state = state.for_job()?;
                super::links::send_reset(&state, &job.payload)
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))
            }
        }),
    );
    let state = state.clone();
    registry.register(
        PRUNE,
        from_fn(move |_| {
            let state = state.clone();
            async move {
                let state = state.for_job()?;
                let retry = |e: crate::error::AppError| JobError::Retryable(e.to_string());
                let guards = super::guards::prune(&state).await.map_err(retry)?;
                let challenges = super::challenges::prune(&state).await.map_err(retry)?;
                tracing::info!(
                    guards,
                    challenges,
                    "idle guess budgets and old MFA challenges deleted"
                );
                Ok(())
            }
        }),
    );
    registry.schedule(Schedule {
        name: PRUNE.into(),
        every: Every::Seconds(900),
        kind: PRUNE.into(),
        payload: json!({}),
    });
}
