//! `autorisen create-admin` and `autorisen import-users`.

use std::path::Path;

use serde_json::json;
use sqlx::Row;

use crate::{
    auth_helpers::*,
    helpers::{base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    create_admin_makes_an_admin_who_can_log_in_and_refuses_a_taken_email,
    create_admin_refuses_a_weak_password,
    import_users_reports_every_line_and_a_second_run_changes_nothing,
    an_imported_bcrypt_user_logs_in_with_the_old_password_and_is_upgraded_to_argon2id,
    a_csv_export_with_postgres_style_values_is_imported_faithfully,
    an_admin_whose_own_address_is_banned_gets_back_in_with_bans_lift,
);

async fn autorisen(
    db: &TestDb,
    args: &[&str],
    admin_password: Option<&str>,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_autorisen"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in base_vars(db) {
        cmd.env(k, v);
    }
    if let Some(p) = admin_password {
        cmd.env("AUTORISEN_ADMIN_PASSWORD", p);
    }
    cmd.stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

async fn app_on(backend: Backend, db: TestDb) -> TestApp {
    let config = config_from(&base_vars(&db));
    TestApp::start(backend, db, config).await
}

async fn create_admin_makes_an_admin_who_can_log_in_and_refuses_a_taken_email(backend: Backend) {
    let db = TestDb::create(backend).await;
    let out = autorisen(
        &db,
        &[
            "create-admin",
            "--email",
            "Root@Example.com",
            "--first-name",
            "Ops",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin"));
    let again = autorisen(
        &db,
        &["create-admin", "--email", "root@example.com"],
        Some(PASSWORD),
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let app = app_on(backend, db).await;
    let s = login_ok(&app, "root@example.com", PASSWORD).await;
    assert_eq!(s.body["user"]["role"], "admin");
    assert_eq!(
        get_authed(&app, "/api/admin/users", &s.access)
            .await
            .status(),
        200
    );
}

async fn create_admin_refuses_a_weak_password(backend: Backend) {
    let db = TestDb::create(backend).await;
    let out = autorisen(
        &db,
        &["create-admin", "--email", "root@example.com"],
        Some("admin123"),
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = autorisen(&db, &["create-admin", "--email", "root@example.com"], None).await;
    assert!(
        !out.status.success(),
        "no password and no terminal to prompt on"
    );
}

fn legacy_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

async fn import_users_reports_every_line_and_a_second_run_changes_nothing(backend: Backend) {
    let db = TestDb::create(backend).await;
    let hash = legacy_hash("old-password-1");
    let lines = [
        json!({"email": "ann@example.com", "password_hash": hash, "role": "CUSTOMER", "first_name": "Ann", "last_name": "Lee", "company": "Acme", "is_verified": true, "created_at": "2024-03-01T10:00:00Z"}).to_string(),
        json!({"email": "dev@example.com", "password_hash": hash, "role": "DEVELOPER", "first_name": "Dev", "last_name": "", "company": null, "is_verified": false, "created_at": "2024-03-02T10:00:00Z"}).to_string(),
        String::new(),
        json!({"email": "boss@example.com", "password_hash": hash, "role": "ADMIN", "first_name": "B", "last_name": "", "is_verified": true, "created_at": "2024-03-03T10:00:00Z"}).to_string(),
        json!({"email": "not-an-email", "password_hash": hash, "role": "CUSTOMER"}).to_string(),
        json!({"email": "plain@example.com", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99", "role": "CUSTOMER"}).to_string(),
        json!({"email": "ANN@example.com", "password_hash": hash, "role": "CUSTOMER"}).to_string(),
        "{not json".to_owned(),
    ];
    let file = write(db.dir(), "users.jsonl", &lines.join("\n"));
    let out = autorisen(&db, &["import-users", &file], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported: 3, skipped: 1, rejected: 3"),
        "{stdout}"
    );
    for expected in [
        "skipped line 7",
        "rejected line 5",
        "rejected line 6",
        "rejected line 8",
        "line 4: ADMIN role not trusted",
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }
    let second = autorisen(&db, &["import-users", &file], None).await;
    let stdout = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(
        stdout.contains("imported: 0, skipped: 4, rejected: 3"),
        "{stdout}"
    );
    let app = app_on(backend, db).await;
    let boss = login_ok(&app, "boss@example.com", "old-password-1").await;
    assert_eq!(
        boss.body["user"]["role"], "customer",
        "an exported ADMIN is not trusted"
    );
    let ann = login_ok(&app, "ann@example.com", "old-password-1").await;
    assert_eq!(ann.body["user"]["profile"]["company_name"], "Acme");
    assert_eq!(ann.body["user"]["email_verified"], true);
    assert_eq!(ann.body["user"]["created_at"], "2024-03-01T10:00:00Z");
}

async fn an_imported_bcrypt_user_logs_in_with_the_old_password_and_is_upgraded_to_argon2id(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let csv = format!("email,password_hash,role,first_name,last_name,company,is_verified,created_at\nold@example.com,{},DEVELOPER,Old,Timer,,false,2023-01-01T00:00:00Z\n", legacy_hash("my-old-password"));
    let file = write(app.db.dir(), "users.csv", &csv);
    let report = autorisen::domains::users::import::run(
        &app.state.db,
        Path::new(&file),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.imported, 1, "{report:?}");
    let hash_of = || async {
        sqlx::query("SELECT password_hash FROM users WHERE email = 'old@example.com'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get::<String, _>("password_hash")
    };
    assert!(hash_of().await.starts_with("$2b$"));
    assert_eq!(
        login(&app, "old@example.com", "not-my-old-password")
            .await
            .status(),
        401
    );
    assert!(
        hash_of().await.starts_with("$2b$"),
        "a failed login upgrades nothing"
    );
    let s = login_ok(&app, "old@example.com", "my-old-password").await;
    assert_eq!(s.body["user"]["role"], "developer");
    assert!(
        hash_of().await.starts_with("$argon2id$"),
        "upgraded at the first success"
    );
    login_ok(&app, "old@example.com", "my-old-password").await;
}

async fn a_csv_export_with_postgres_style_values_is_imported_faithfully(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let csv = format!(
        "email,hashed_password,user_role,first_name,last_name,company,is_verified,created_at\n\
         \"Zodwa@Example.com\",{},customer,\"Zodwa\",\"Dlamini, Jr\",\"Ubuntu \"\"Co\"\"\",t,2022-06-15 08:30:00.123456+00\n\
         bad@example.com,{},OWNER,B,,,f,2022-06-15 08:30:00\n",
        legacy_hash("pw-zodwa-2022"),
        legacy_hash("pw-bad")
    );
    let file = write(app.db.dir(), "export.txt", &csv);
    let options = autorisen::domains::users::import::Options {
        format: Some(autorisen::domains::users::import::Format::Csv),
        trust_admin_role: false,
    };
    let report = autorisen::domains::users::import::run(&app.state.db, Path::new(&file), &options)
        .await
        .unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].0, 3, "{report:?}");
    let s = login_ok(&app, "zodwa@example.com", "pw-zodwa-2022").await;
    let user = &s.body["user"];
    assert_eq!(user["last_name"], "Dlamini, Jr");
    assert_eq!(user["profile"]["company_name"], "Ubuntu \"Co\"");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["created_at"], "2022-06-15T08:30:00.123456Z");
    let actions = audit_actions(&app, &s.user_id).await;
    assert_eq!(actions[0].0, "user_imported");
}

/// Issue 15, point 9: the way back that does not need the banned address.
async fn an_admin_whose_own_address_is_banned_gets_back_in_with_bans_lift(backend: Backend) {
    let db = TestDb::create(backend).await;
    let mut vars = base_vars(&db);
    vars.insert("BAN_SYNC_SECONDS".into(), "1".into());
    let app = TestApp::start(backend, db, config_from(&vars)).await;
    let admin = make_admin(&app).await;
    app.state
        .edge
        .bans
        .ban("127.0.0.1".parse().unwrap(), "testing")
        .await;
    let me = get_authed(&app, "/api/auth/me", &admin.access).await;
    assert_eq!(me.status(), 403, "the admin is locked out");

    let out = autorisen(&app.db, &["bans", "list"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.starts_with("127.0.0.1\tlevel 1\tuntil "), "{listed}");
    let out = autorisen(&app.db, &["bans", "lift", "127.0.0.1"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The running instance picks the lift up at its next ban sync.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get_authed(&app, "/api/auth/me", &admin.access)
        .await
        .status()
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "still banned");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = autorisen(&app.db, &["bans", "lift", "127.0.0.1"], None).await;
    assert_eq!(out.status.code(), Some(1), "not banned any more");
    let out = autorisen(&app.db, &["bans", "list"], None).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no running bans\n");
}
