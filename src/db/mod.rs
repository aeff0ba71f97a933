//! The database: one `sqlx::AnyPool` over SQLite or PostgreSQL, chosen by `DATABASE_URL`.
//!
//! Domain code writes each query once, with `$1..$n` placeholders that both backends accept, and
//! binds only portable types (`i64`, `String`, `bool`, bytes). Ids are UUID text and timestamps
//! are Unix microseconds (`BIGINT`, UTC), converted in Rust by [`types`].

pub mod faults;
pub mod migrate;
pub mod types;
pub mod watch;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, Connection, Executor,
};

pub use faults::{is_storage_fault, StorageFault, StorageFaults};
pub use watch::{DbState, PoolWatch};

/// The backend behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite (development default, single instance).
    Sqlite,
    /// PostgreSQL (production, several instances).
    Postgres,
}

impl Backend {
    /// Which backend a `DATABASE_URL` names.
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        match url.split(':').next() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            other => anyhow::bail!("unsupported database scheme {other:?}"),
        }
    }
}

/// The connection pool and which backend it speaks to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    faults: Arc<StorageFaults>,
    watch: Arc<PoolWatch>,
    max_connections: u32,
}

impl Db {
    /// Connects to `url`; SQLite files (and their folder) are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let faults = Arc::<StorageFaults>::default();
        let (acquired, released) = (faults.clone(), faults.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(if backend == Backend::Sqlite { 1 } else { 0 })
            .acquire_timeout(Duration::from_secs(5))
            // A ping before every checkout doubled the round trips of each request (measured on
            // `/api/auth/me`); a connection that died is instead dropped when its query fails,
            // and idle ones are recycled before a server or proxy would cut them.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            .before_acquire(move |_conn, meta| {
                // An idle connection may have been opened while storage was failing.
                let keep = !acquired.spoils(meta.age);
                Box::pin(async move { Ok(keep) })
            })
            .after_release(move |conn, meta| {
                let spoiled = released.spoils(meta.age);
                Box::pin(async move {
                    if spoiled {
                        return Ok(false);
                    }
                    keep_unless_in_transaction(conn, backend).await
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout makes writers
                        // wait for each other instead of failing with SQLITE_BUSY.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    } else {
                        conn.execute("SET TIME ZONE 'UTC'").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            backend,
            faults,
            watch: Arc::default(),
            max_connections,
        })
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that may write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// SQLITE_BUSY_SNAPSHOT, without waiting, when another connection wrote in between, whereas an
    /// immediate one waits its turn under the busy timeout.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// The pool's size, `DATABASE_MAX_CONNECTIONS`.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers whether the database responds to a trivial query within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        match tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Whether writes are failing on storage (full disk, read-only file, I/O error).
    pub fn faults(&self) -> &StorageFaults {
        &self.faults
    }

    /// The pool's queueing delay and whether the database answers ([`watch`]).
    pub fn watch(&self) -> &PoolWatch {
        &self.watch
    }

    /// Starts the background sampler behind [`Db::watch`]; until then the watch reports no
    /// queue and the database up.
    pub fn spawn_watch(&self) {
        self.watch
            .spawn_sampler(self.pool.clone(), self.max_connections);
    }

    /// Records `e` in [`Db::faults`] when it is a storage fault; returns it unchanged.
    pub fn note(&self, e: sqlx::Error) -> sqlx::Error {
        if is_storage_fault(&e) {
            self.faults.record();
        }
        e
    }

    /// Writes and commits a row that needs fresh pages (`storage_probe`), within `timeout`: the
    /// check that tells whether writes work again after a storage fault. Clears the fault on
    /// success.
    pub async fn probe_write(&self, timeout: Duration) -> Result<(), String> {
        let write = async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO storage_probe (id, written_at, filler) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at, \
                 filler = excluded.filler",
            )
            .bind(types::now_micros())
            .bind(vec![0x5a_u8; PROBE_BYTES])
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                self.faults.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(self.note(e).to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The size of the probe's row: several pages, so that a full disk refuses it.
const PROBE_BYTES: usize = 32 * 1024;

/// Keeps a returned connection only if no transaction is open on it (and, checked before, no
/// storage fault may have spoiled it: [`StorageFaults::spoils`]). When SQLite ends a
/// transaction by itself (it rolls back on SQLITE_FULL or SQLITE_IOERR), sqlx's own ROLLBACK
/// then fails and its transaction depth stays at 1: every later `BEGIN` on that connection
/// failed with "attempted to call begin_with at non-zero transaction depth", so four such errors
/// took every connection of a four-connection pool until a restart. Such a connection is closed
/// instead, and the pool opens a fresh one.
async fn keep_unless_in_transaction(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() && backend == Backend::Sqlite {
        // SQLite runs the rollback queued by a dropped transaction on its worker thread; a
        // ping queued behind it returns once it ran (PostgreSQL counts it at once).
        conn.ping().await?;
    }
    if conn.is_in_transaction() {
        tracing::warn!("a connection came back with a transaction open; it is closed");
        return Ok(false);
    }
    Ok(true)
}

/// Adds `mode=rwc` so the file is created, and creates its folder.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
    }
    if query.contains("mode=") {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("sqlite://{path}?mode=rwc"))
    } else {
        Ok(format!("sqlite://{path}?{query}&mode=rwc"))
    }
}

/// Error codes that mean "try again later", not "bug": SQLite BUSY (5) and LOCKED (6);
/// PostgreSQL connection exceptions (class 08), insufficient resources such as
/// too_many_connections (class 53), and operator intervention such as a server shutting down or
/// starting up (class 57P); and storage faults ([`faults::is_storage_code`]).
pub fn is_unavailable_code(code: &str) -> bool {
    if faults::is_storage_code(code) {
        return true;
    }
    // SQLite reports extended codes (517 is BUSY_SNAPSHOT): the primary code is the low byte.
    // PostgreSQL SQLSTATEs are always five characters, so the two never collide.
    if code.len() < 5 {
        return code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
    }
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_sqlite_url_gets_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/app.db", dir.path().display());
        let prepared = prepare_sqlite_url(&url).unwrap();
        assert!(prepared.ends_with("/sub/app.db?mode=rwc"), "{prepared}");
        assert!(dir.path().join("sub").is_dir());
    }

    #[test]
    fn busy_and_overloaded_databases_are_unavailable_not_internal_errors() {
        for code in ["5", "6", "517", "262", "08006", "53300", "57P03"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "1", "19", "2067"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }

    #[test]
    fn both_postgres_schemes_are_accepted() {
        assert_eq!(
            Backend::of_url("postgres://h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://h/db").is_err());
    }
}
