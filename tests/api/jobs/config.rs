//! `JOBS_*` through the binary: listed by `config check`, every bad value reported at once.

use std::process::{Command, Output};

fn config_check(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autorisen"))
        .args(["config", "check"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTORISEN_ENV", "test")
        .env("SECRET_KEY", "k7Qz9vX2mN4pR8tW1yB6cF3hJ5lD0sGa")
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn config_check_lists_the_job_runner_settings() {
    let out = config_check(&[("JOBS_CONCURRENCY", "8"), ("JOBS_LEASE_SECONDS", "90")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in [
        "JOBS_CONCURRENCY=8",
        "JOBS_LEASE_SECONDS=90",
        "JOBS_POLL_INTERVAL_MS=1000",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
}

#[test]
fn every_bad_job_runner_setting_is_reported_at_once() {
    let out = config_check(&[
        ("JOBS_CONCURRENCY", "0"),
        ("JOBS_LEASE_SECONDS", "a minute"),
        ("JOBS_POLL_INTERVAL_MS", "-5"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "JOBS_CONCURRENCY: must be between 1 and 256",
        "JOBS_LEASE_SECONDS: `a minute` is not",
        "JOBS_POLL_INTERVAL_MS: `-5` is not",
    ] {
        assert!(stderr.contains(var), "{var} in {stderr}");
    }
}
