//! Migrations: both backends end with the same tables and columns; deployed environments never
//! start on a schema that is behind.

use std::collections::{BTreeMap, BTreeSet};

use autorisen::{app::App, db::Db};
use sqlx::Row;

use crate::{
    helpers::{base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
};

type Schema = BTreeMap<String, BTreeSet<String>>;

async fn schema_of(db: &Db) -> Schema {
    let sql = match db.backend() {
        autorisen::db::Backend::Sqlite => {
            // Full-text indexes are each database's own (FTS5 virtual tables and their shadow
            // tables here, `tsvector` columns on PostgreSQL), so both are left out.
            "SELECT m.name AS t, p.name AS c FROM pragma_table_list m, pragma_table_info(m.name) p \
             WHERE m.schema = 'main' AND m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '_sqlx_migrations'"
        }
        autorisen::db::Backend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
             AND data_type <> 'tsvector'"
        }
    };
    let mut schema = Schema::new();
    for row in sqlx::query(sql).fetch_all(db.pool()).await.unwrap() {
        let t: String = row.get("t");
        let c: String = row.get("c");
        schema.entry(t).or_default().insert(c);
    }
    schema
}

fn migration_versions(dir: &str) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .split('_')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
    v.sort();
    v
}

#[test]
fn both_backends_have_migrations_with_the_same_versions() {
    let sqlite = migration_versions("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, migration_versions("postgres"));
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_tables_and_columns() {
    let sqlite = TestApp::spawn(Backend::Sqlite).await;
    let postgres = TestApp::spawn(Backend::Postgres).await;
    let a = schema_of(&sqlite.state.db).await;
    let b = schema_of(&postgres.state.db).await;
    assert!(a.contains_key("app_meta"), "{a:?}");
    assert_eq!(a, b, "SQLite and PostgreSQL schemas differ");
}

on_both_backends!(
    production_refuses_to_start_on_a_schema_that_is_behind,
    production_starts_once_the_release_phase_has_migrated,
    production_migrates_on_start_when_allowed,
);

fn production_vars(
    db: &TestDb,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let mut vars = base_vars(db);
    vars.insert("AUTORISEN_ENV".into(), "production".into());
    vars.insert("PUBLIC_BASE_URL".into(), "https://app.example.test".into());
    // Production requires real mail delivery; nothing connects until a message is due.
    vars.insert(
        "MAIL_TRANSPORT".into(),
        "smtps://mailer:pass@smtp.example.test".into(),
    );
    vars.insert("MAIL_FROM".into(), "no-reply@example.test".into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    vars
}

async fn production_refuses_to_start_on_a_schema_that_is_behind(backend: Backend) {
    let db = TestDb::create(backend).await;
    let err = App::build(config_from(&production_vars(&db, &[])))
        .await
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(message.contains("autorisen migrate"), "{message}");
    assert!(message.contains("AUTORISEN_MIGRATE_ON_START"), "{message}");
}

async fn production_starts_once_the_release_phase_has_migrated(backend: Backend) {
    let db = TestDb::create(backend).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_autorisen"))
        .arg("migrate")
        .env_clear()
        .envs(production_vars(&db, &[]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second run is a no-op, as a release phase repeated on every deploy must be.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_autorisen"))
        .arg("migrate")
        .env_clear()
        .envs(production_vars(&db, &[]))
        .status()
        .unwrap();
    assert!(again.success());
    let vars = production_vars(&db, &[]);
    let app = TestApp::start(backend, db, config_from(&vars)).await;
    assert_eq!(app.get("/ready").await.status(), 200);
}

async fn production_migrates_on_start_when_allowed(backend: Backend) {
    let db = TestDb::create(backend).await;
    let vars = production_vars(&db, &[("AUTORISEN_MIGRATE_ON_START", "true")]);
    let app = TestApp::start(backend, db, config_from(&vars)).await;
    assert_eq!(app.get("/ready").await.status(), 200);
    let schema = schema_of(&app.state.db).await;
    assert!(schema.contains_key("app_meta"));
}
