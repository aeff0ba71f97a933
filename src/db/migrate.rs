//! Migrations for both backends, embedded in the binary with matching version numbers.

use sqlx::migrate::{Migrate, Migrator};

use super::{Backend, Db};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The embedded migrations of a backend.
pub fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Applies every pending migration; returns how many were applied.
pub async fn run(db: &Db) -> anyhow::Result<usize> {
    let before = pending(db).await?.len();
    migrator(db.backend()).run(db.pool()).await?;
    Ok(before)
}

/// The versions embedded in this binary that the database has not applied yet.
pub async fn pending(db: &Db) -> anyhow::Result<Vec<i64>> {
    let mut conn = db.pool().acquire().await?;
    // A database that was never migrated has no bookkeeping table: everything is pending.
    let applied = conn.list_applied_migrations().await.unwrap_or_default();
    Ok(migrator(db.backend())
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .filter(|v| !applied.iter().any(|a| a.version == *v))
        .collect())
}
