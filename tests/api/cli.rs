//! The binary: configuration checks, the development default, and SIGTERM.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn autorisen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autorisen"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_health(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
            if res.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn config_check_in_production_without_settings_exits_2_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = autorisen()
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("AUTORISEN_ENV", "production")
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in ["SECRET_KEY", "DATABASE_URL", "PUBLIC_BASE_URL", "PORT"] {
        assert!(stderr.contains(var), "{var} is listed: {stderr}");
    }
    assert!(
        stderr.contains("example:"),
        "each problem shows a valid example: {stderr}"
    );
}

#[test]
fn a_placeholder_or_short_secret_key_is_refused_outside_development() {
    for key in ["change-me", "your-secret-key-here", "tooshort"] {
        let out = autorisen()
            .args(["config", "check"])
            .env("AUTORISEN_ENV", "staging")
            .env("SECRET_KEY", key)
            .env("PUBLIC_BASE_URL", "https://staging.example.test")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));
    }
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let secret = "k".repeat(20) + &"Z9".repeat(10);
    let out = autorisen()
        .args(["config", "check"])
        .env("AUTORISEN_ENV", "production")
        .env("SECRET_KEY", &secret)
        .env(
            "DATABASE_URL",
            "postgresql://app:hunter2-db-pass@db.example.test:5432/autorisen?sslmode=require",
        )
        .env(
            "REDIS_URL",
            "rediss://:redis-pass-77@cache.example.test:6380",
        )
        .env("PUBLIC_BASE_URL", "https://app.example.test")
        .env(
            "MAIL_TRANSPORT",
            "smtps://mailer:smtp-pass-55@smtp.example.test:465",
        )
        .env("MAIL_FROM", "CapeControl <no-reply@example.test>")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(&secret), "{stdout}");
    assert!(!stdout.contains("hunter2-db-pass"), "{stdout}");
    assert!(!stdout.contains("redis-pass-77"), "{stdout}");
    assert!(!stdout.contains("smtp-pass-55"), "{stdout}");
    assert!(
        stdout.contains("MAIL_TRANSPORT=smtps://mailer:[redacted]@smtp.example.test:465"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DATABASE_URL=postgresql://app:%5Bredacted%5D@db.example.test"),
        "{stdout}"
    );
    assert!(stdout.contains("HOST=0.0.0.0"), "{stdout}");
    assert!(stdout.contains("LOG_FORMAT=json"), "{stdout}");
}

#[test]
fn serve_refuses_to_start_misconfigured_and_exits_2() {
    let out = autorisen()
        .arg("serve")
        .env("AUTORISEN_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));
}

#[test]
fn invalid_edge_settings_are_all_reported_at_once() {
    let out = autorisen()
        .args(["config", "check"])
        .env("AUTORISEN_ENV", "test")
        .env("SECRET_KEY", "k".repeat(40))
        .env("TRUSTED_PROXIES", "10.0.0.0/8,not-a-net")
        .env("RATE_LIMIT_GENERAL", "600 per minute")
        .env("RATE_LIMIT_AUTH_MODE", "sometimes")
        .env("MAX_HEADER_BYTES", "100")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "TRUSTED_PROXIES",
        "RATE_LIMIT_GENERAL",
        "RATE_LIMIT_AUTH_MODE",
        "MAX_HEADER_BYTES",
    ] {
        assert!(stderr.contains(var), "{var} is listed: {stderr}");
    }
    assert!(!stderr.contains("RATE_LIMIT_AI"), "{stderr}");
}

#[test]
fn version_prints_the_version() {
    let out = autorisen().arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// The README's run command on a fresh checkout: no settings at all, SQLite under ./data.
#[tokio::test]
async fn with_no_settings_serve_runs_on_sqlite_in_the_data_folder_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = autorisen()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_health(port).await, "serves /health");
    assert!(dir.path().join("data/autorisen.db").is_file());
    let key = std::fs::read_to_string(dir.path().join("data/dev-secret-key")).unwrap();
    assert!(key.len() >= 32);

    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The development key survives a restart, so tokens do too.
    let mut again = autorisen()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_health(port).await);
    Command::new("kill")
        .args(["-INT", &again.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        again.wait().unwrap().code(),
        Some(0),
        "SIGINT is a clean exit too"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/dev-secret-key")).unwrap(),
        key
    );
}
