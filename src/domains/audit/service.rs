//! The audit service other domains call: append an event in their transaction, read pages.

use sqlx::{Any, AnyConnection, Executor};

use super::{
    store,
    types::{AuditEntry, Event, Filter, RequestMeta},
};

/// Appends `event` on `conn`, which should be the transaction of the change it records, so the
/// event exists if and only if the change commits.
pub async fn record(
    conn: &mut AnyConnection,
    meta: &RequestMeta,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    store::record(conn, meta, event).await
}

/// One page of events matching `filter`, newest first, and the total count.
pub async fn list<'c, E>(
    db: E,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    store::list(db, filter, limit, offset).await
}
