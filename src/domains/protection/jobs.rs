//! The protection domain's upkeep: ban records that can no longer escalate a ban are deleted,
//! so the shared ban list (the Redis hash or the `edge_bans` table) does not grow forever.

use serde_json::json;

use crate::{
    jobs::{from_fn, Every, JobError, Registry, Schedule},
    state::LateState,
};

/// The kind (and schedule) that prunes old ban records.
pub const PRUNE_BANS: &str = "protection.prune_bans";

/// Registers the prune job, run every hour.
pub fn register(registry: &mut Registry, state: &LateState) {
    let state = state.clone();
    registry.register(
        PRUNE_BANS,
        from_fn(move |_| {
            let state = state.clone();
            async move {
                let state = state.for_job()?;
                let deleted = state
                    .edge
                    .bans
                    .prune()
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))?;
                tracing::info!(deleted, "old ban records deleted");
                Ok(())
            }
        }),
    );
    registry.schedule(Schedule {
        name: PRUNE_BANS.into(),
        every: Every::Seconds(3600),
        kind: PRUNE_BANS.into(),
        payload: json!({}),
    });
}
