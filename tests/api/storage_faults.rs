//! Storage faults: a full disk, a read-only data folder, a transaction the database ended by
//! itself, a delivered message whose `sent` update fails. Writes answer 503 with `Retry-After`
//! while storage refuses them, health says unhealthy meanwhile, and everything works again by
//! itself once storage does.
//!
//! The full-disk and read-only tests are SQLite-only: they mount a small tmpfs or set the
//! immutable attribute (`chattr +i`, which root cannot write through, unlike file modes), so
//! they need root (CI runs as root).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::json;
use sqlx::{Executor, Row};

use crate::{
    auth_helpers::{unique_email, PASSWORD},
    helpers::{assert_problem, base_vars, config_from, Backend, TestApp, TestDb},
    mail::{queue, verify},
    on_both_backends,
};

on_both_backends!(
    a_transaction_the_database_ended_by_itself_never_poisons_a_pooled_connection,
    a_delivered_message_whose_sent_update_fails_is_not_delivered_again,
);

/// `POST /api/auth/register` for a fresh address; the response as it is.
async fn register(app: &TestApp) -> reqwest::Response {
    app.post_json(
        "/api/auth/register",
        &json!({"email": unique_email("writer"), "password": PASSWORD,
                "first_name": "Thandi", "last_name": "Mokoena", "role": "customer"}),
    )
    .await
}

/// Asserts a 503 problem with `Retry-After`, as every write answers while storage refuses it.
async fn assert_storage_503(res: reqwest::Response) {
    let retry_after = TestApp::header(&res, "retry-after");
    assert_problem(res, 503).await;
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After: {retry_after:?}"
    );
}

/// The status code of `/api/health` and of `/ready`.
async fn health_codes(app: &TestApp) -> (u16, u16) {
    let health = app.get("/api/health").await.status().as_u16();
    let ready = app.get("/ready").await.status().as_u16();
    (health, ready)
}

/// Registers until one write succeeds (at most `within`), as a client retrying would.
async fn writes_work_again(app: &TestApp, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if register(app).await.status() == 201 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
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

async fn a_delivered_message_whose_sent_update_fails_is_not_delivered_again(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &crate::mail::vars(&[("MAIL_MAX_ATTEMPTS", "1000"), ("MAIL_RETRY_BASE_MS", "10")]),
    )
    .await;
    let pool = app.state.db.pool();
    // The database refuses to record a delivery, as a full disk or read-only file would.
    let refuse = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_sent BEFORE UPDATE OF status ON mail_outbox \
             WHEN NEW.status = 'sent' BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION refuse_sent() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'disk full (test)' USING ERRCODE = '53100'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_sent BEFORE UPDATE ON mail_outbox FOR EACH ROW \
             WHEN (NEW.status = 'sent') EXECUTE FUNCTION refuse_sent()"
        }
    };
    pool.execute(refuse).await.expect("trigger");

    let to = ["one@example.test", "two@example.test", "three@example.test"];
    queue(&app, &to.map(|t| verify(t, "tok"))).await;
    // Each job is retried several times while the update keeps failing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let least: i64 =
            sqlx::query("SELECT MIN(attempts) AS n FROM jobs WHERE kind = 'mail.send'")
                .fetch_one(pool)
                .await
                .unwrap()
                .get("n");
        if least >= 4 || tokio::time::Instant::now() > deadline {
            assert!(least >= 4, "the jobs were retried ({least} attempts)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        mail_files(&app.mail_dir()),
        3,
        "each message delivered once"
    );

    pool.execute("DROP TRIGGER refuse_sent ON mail_outbox")
        .await
        .or(pool.execute("DROP TRIGGER refuse_sent").await)
        .expect("drop trigger");
    let rows = crate::mail::settled(pool).await;
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    assert_eq!(mail_files(&app.mail_dir()), 3, "still once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_full_disk_answers_503_and_health_is_unhealthy_until_writes_work() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("HEALTH_CACHE_MS", "0")]).await;
    let pool = app.state.db.pool();
    // PostgreSQL's own answer to a full disk (disk_full, 53100), for new users and the probe.
    pool.execute(
        "CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN \
         RAISE EXCEPTION 'could not extend file (test)' USING ERRCODE = '53100'; END $$ \
         LANGUAGE plpgsql; \
         CREATE TRIGGER disk_full BEFORE INSERT ON users \
         FOR EACH ROW EXECUTE FUNCTION disk_full(); \
         CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON storage_probe \
         FOR EACH ROW EXECUTE FUNCTION disk_full()",
    )
    .await
    .expect("triggers");
    assert_eq!(health_codes(&app).await, (200, 200), "reads answer");

    assert_storage_503(register(&app).await).await;
    assert_eq!(
        health_codes(&app).await,
        (503, 503),
        "unhealthy while writes fail"
    );

    pool.execute("DROP TRIGGER disk_full ON users; DROP TRIGGER disk_full ON storage_probe")
        .await
        .expect("drop triggers");
    assert_eq!(
        health_codes(&app).await,
        (200, 200),
        "healthy once writes work"
    );
    assert_eq!(register(&app).await.status(), 201);
}

fn mail_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

mod sqlite_only {
    use super::*;

    /// A tmpfs mounted for one test, unmounted (and its folder removed) at the end.
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(at: &Path, size: &str) -> Self {
            std::fs::create_dir_all(at).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "this test mounts a tmpfs: run it as root (CI does)");
            Self(at.to_owned())
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    /// The database, its WAL and their folder. Not the `-shm` file: SQLite maps it into memory,
    /// and a write through a mapping of an immutable file is a SIGBUS (a chmod, the real-world
    /// fault, leaves mappings writable).
    fn store_files(store: &Path) -> Vec<PathBuf> {
        ["test.db", "test.db-wal", ""]
            .iter()
            .map(|f| store.join(f))
            .filter(|p| p.exists())
            .collect()
    }

    /// Sets or clears the immutable attribute on the store (what exists of it now: the WAL goes
    /// when the last connection closes, maybe between listing and `chattr`, hence the retries).
    fn immutable(store: &Path, on: bool) {
        let mut error = String::new();
        for _ in 0..5 {
            let out = Command::new("chattr")
                .arg(if on { "+i" } else { "-i" })
                .args(store_files(store))
                .output()
                .expect("chattr (e2fsprogs)");
            if out.status.success() {
                return;
            }
            error = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("chattr (run this test as root, as CI does): {error}");
    }

    /// Clears the immutable attribute even when the test fails, so the folder can be removed.
    struct Writable(PathBuf);

    impl Drop for Writable {
        fn drop(&mut self) {
            let _ = Command::new("chattr")
                .arg("-i")
                .args(store_files(&self.0))
                .status();
        }
    }

    /// An app on SQLite whose database lives in `<tmp>/store` (what the test breaks).
    async fn app_with_store(prepare: impl FnOnce(&Path)) -> (TestApp, PathBuf) {
        app_with_store_and(prepare, &[]).await
    }

    /// [`app_with_store`] with extra variables.
    async fn app_with_store_and(
        prepare: impl FnOnce(&Path),
        extra: &[(&str, &str)],
    ) -> (TestApp, PathBuf) {
        let mut db = TestDb::create(Backend::Sqlite).await;
        let store = db.dir().join("store");
        prepare(&store);
        db.url = format!("sqlite://{}/test.db", store.display());
        let mut vars = base_vars(&db);
        vars.insert("HEALTH_CACHE_MS".into(), "0".into());
        vars.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let app = TestApp::start(Backend::Sqlite, db, config_from(&vars)).await;
        (app, store)
    }

    /// Fills the file system of `dir` with one file until it is full.
    fn fill(dir: &Path) -> PathBuf {
        use std::io::Write;
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_writes_on_a_full_disk_answer_503_and_work_again_once_space_returns() {
        let mut mount = None;
        let (app, store) = app_with_store(|store| mount = Some(Tmpfs::mount(store, "6m"))).await;
        assert_eq!(register(&app).await.status(), 201, "writes work at first");

        let filler = fill(&store);
        let mut refused = 0;
        for _ in 0..40 {
            let res = register(&app).await;
            if res.status() == 201 {
                continue; // pages the database already had
            }
            assert_storage_503(res).await;
            refused += 1;
            if refused == 8 {
                break;
            }
        }
        assert_eq!(refused, 8, "a full disk refuses writes, each with a 503");
        assert_eq!(
            health_codes(&app).await,
            (503, 503),
            "unhealthy while writes fail"
        );

        std::fs::remove_file(filler).unwrap();
        assert!(
            writes_work_again(&app, Duration::from_secs(10)).await,
            "writes work again once space returns, without a restart"
        );
        for _ in 0..10 {
            assert_eq!(register(&app).await.status(), 201, "every write, not some");
        }
        assert_eq!(health_codes(&app).await, (200, 200), "healthy again");
        drop(app);
        drop(mount);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_mail_sent_while_the_data_folder_flips_read_only_is_delivered_once_each() {
        let fast = [
            ("MAIL_MAX_ATTEMPTS", "1000"),
            ("MAIL_RETRY_BASE_MS", "10"),
            ("MAIL_POLL_INTERVAL_MS", "20"),
            ("JOBS_LEASE_SECONDS", "1"),
        ];
        let (app, store) = app_with_store_and(|_| {}, &fast).await;
        let _guard = Writable(store.clone());
        // Messages are queued, then the folder turns read-only while they are being delivered
        // (their "sent" update fails), then writable again, 30 times.
        let mut queued = 0;
        for round in 0..30 {
            let to: Vec<String> = (0..4)
                .map(|i| format!("r{round}m{i}@example.test"))
                .collect();
            let emails: Vec<_> = to.iter().map(|t| verify(t, "tok")).collect();
            let queue = async {
                let mut tx = app.state.db.pool().begin().await?;
                for email in &emails {
                    autorisen::mail::enqueue(&mut tx, email).await?;
                }
                tx.commit().await
            };
            if queue.await.is_ok() {
                queued += emails.len();
                app.state.mail.wake();
            }
            tokio::time::sleep(Duration::from_micros(500 + (round % 7) * 700)).await;
            immutable(&store, true);
            tokio::time::sleep(Duration::from_millis(150)).await;
            immutable(&store, false);
        }

        let rows = crate::mail::settled(app.state.db.pool()).await;
        let unsent: Vec<_> = rows
            .iter()
            .filter(|r| r.status != "sent")
            .map(|r| (&r.recipient, &r.status, r.attempts))
            .collect();
        assert!(unsent.is_empty(), "not recorded as sent: {unsent:?}");
        assert_eq!(rows.len(), queued);
        tokio::time::sleep(Duration::from_millis(500)).await; // a late re-delivery would show
        assert_eq!(
            mail_files(&app.mail_dir()),
            queued,
            "one delivery per message"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_a_read_only_data_folder_answers_503_and_every_write_works_once_it_is_writable(
    ) {
        let (app, store) = app_with_store(|_| {}).await;
        assert_eq!(register(&app).await.status(), 201, "writes work at first");
        let _guard = Writable(store.clone());

        immutable(&store, true);
        for _ in 0..8 {
            assert_storage_503(register(&app).await).await;
        }
        assert_eq!(
            health_codes(&app).await,
            (503, 503),
            "unhealthy while writes fail"
        );

        immutable(&store, false);
        assert!(
            writes_work_again(&app, Duration::from_secs(10)).await,
            "writes work again once the folder is writable, without a restart"
        );
        for _ in 0..20 {
            assert_eq!(register(&app).await.status(), 201, "every write, not some");
        }
        // Nothing called the health check since: the job runner's probe cleared the fault.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while app.state.db.faults().is_failing() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !app.state.db.faults().is_failing(),
            "cleared without a health check"
        );
        assert_eq!(health_codes(&app).await, (200, 200), "healthy again");
    }
}
