//! `MAIL_*` validation through the binary: every problem listed, the SMTP password never shown.

use std::process::{Command, Output};

fn config_check(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autorisen"))
        .args(["config", "check"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

const PRODUCTION: [(&str, &str); 4] = [
    ("AUTORISEN_ENV", "production"),
    ("SECRET_KEY", "k7Qz9vX2mN4pR8tW1yB6cF3hJ5lD0sGa"),
    ("DATABASE_URL", "postgres://app@db.example.test/autorisen"),
    ("PUBLIC_BASE_URL", "https://app.example.test"),
];

fn production(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    PRODUCTION.iter().chain(extra).copied().collect()
}

fn problems(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn production_refuses_the_log_transport_and_lists_every_mail_problem() {
    let out = config_check(&production(&[
        ("MAIL_TRANSPORT", "log"),
        ("MAIL_POLL_INTERVAL_MS", "0"),
        ("MAIL_MAX_ATTEMPTS", "many"),
    ]));
    let stderr = problems(&out);
    assert!(
        stderr.contains("MAIL_TRANSPORT: `log` does not deliver mail"),
        "{stderr}"
    );
    assert!(stderr.contains("MAIL_POLL_INTERVAL_MS"), "{stderr}");
    assert!(stderr.contains("MAIL_MAX_ATTEMPTS"), "{stderr}");
}

#[test]
fn production_requires_a_mail_transport_and_refuses_plain_smtp() {
    let stderr = problems(&config_check(&production(&[])));
    assert!(stderr.contains("MAIL_TRANSPORT: is required"), "{stderr}");
    let stderr = problems(&config_check(&production(&[
        ("MAIL_TRANSPORT", "smtp://relay.example.test:25?tls=none"),
        ("MAIL_FROM", "no-reply@example.test"),
    ])));
    assert!(
        stderr.contains("tls=none is refused in production"),
        "{stderr}"
    );
}

#[test]
fn a_bad_transport_url_and_sender_are_both_reported_without_the_password() {
    let out = config_check(&[
        ("AUTORISEN_ENV", "test"),
        (
            "MAIL_TRANSPORT",
            "smpt://mailer:hunter2-smtp@relay.example.test",
        ),
        ("MAIL_FROM", "not an address"),
    ]);
    let stderr = problems(&out);
    assert!(stderr.contains("MAIL_TRANSPORT: scheme `smpt`"), "{stderr}");
    assert!(stderr.contains("MAIL_FROM"), "{stderr}");
    assert!(!stderr.contains("hunter2-smtp"), "{stderr}");
}

#[test]
fn smtp_without_a_sender_is_refused() {
    let out = config_check(&[
        ("AUTORISEN_ENV", "test"),
        ("MAIL_TRANSPORT", "smtp://relay.example.test"),
    ]);
    assert!(problems(&out).contains("MAIL_FROM: is required when MAIL_TRANSPORT is smtp"));
}

#[test]
fn config_check_shows_the_mail_settings_with_the_password_redacted() {
    let out = config_check(&production(&[
        (
            "MAIL_TRANSPORT",
            "smtp://apikey:smtp-secret-9@smtp.example.test:2525",
        ),
        ("MAIL_FROM", "CapeControl <no-reply@example.test>"),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{out:?}");
    assert!(!stdout.contains("smtp-secret-9"), "{stdout}");
    assert!(
        stdout.contains("MAIL_TRANSPORT=smtp://apikey:[redacted]@smtp.example.test:2525"),
        "{stdout}"
    );
    assert!(stdout.contains("MAIL_MAX_ATTEMPTS=8"), "{stdout}");
}
