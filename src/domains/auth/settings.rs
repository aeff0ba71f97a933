//! The identity settings: token lifetimes, refresh-reuse grace, password hashing concurrency.

use std::{sync::Arc, time::Duration};

use crate::config::{Core, DomainSettings, Reader, Secret};

/// Identity settings: token lifetimes, refresh-reuse grace, password hashing concurrency.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `ACCESS_TOKEN_TTL_SECONDS` (default 900).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECONDS`: sliding refresh lifetime (default 14 days, at most 30).
    pub refresh_token_ttl: Duration,
    /// `REFRESH_REUSE_GRACE_SECONDS`: a rotated refresh token presented again within this window
    /// is refused without revoking the session (a client racing itself); later, it revokes the
    /// whole session family (default 10).
    pub refresh_reuse_grace: Duration,
    /// `PASSWORD_HASH_CONCURRENCY`: argon2 hashes running at once (default: CPU cores).
    pub password_hash_concurrency: usize,
    /// `AUTORISEN_ADMIN_PASSWORD`: the password `autorisen create-admin` uses instead of prompting.
    pub admin_password: Option<Secret>,
}

impl DomainSettings for AuthSettings {
    fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "ACCESS_TOKEN_TTL_SECONDS",
                self.access_token_ttl.as_secs().to_string(),
            ),
            (
                "REFRESH_TOKEN_TTL_SECONDS",
                self.refresh_token_ttl.as_secs().to_string(),
            ),
            (
                "REFRESH_REUSE_GRACE_SECONDS",
                self.refresh_reuse_grace.as_secs().to_string(),
            ),
            (
                "PASSWORD_HASH_CONCURRENCY",
                self.password_hash_concurrency.to_string(),
            ),
            (
                "AUTORISEN_ADMIN_PASSWORD",
                self.admin_password
                    .as_ref()
                    .map_or_else(|| "(not set)".into(), |_| "[redacted]".into()),
            ),
        ]
    }
}

/// The absolute lifetime of a session, whatever the refresh lifetime.
pub const SESSION_ABSOLUTE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Reads the identity settings (the auth domain's [`SettingsReader`](crate::config::SettingsReader)).
pub fn read(r: &mut Reader<'_>, _core: &Core) -> Arc<dyn DomainSettings> {
    Arc::new(read_settings(r))
}

fn read_settings(r: &mut Reader<'_>) -> AuthSettings {
    let access_token_ttl = r.positive_seconds("ACCESS_TOKEN_TTL_SECONDS", 900, "900");
    if access_token_ttl > Duration::from_secs(3600) {
        r.problem(
            "ACCESS_TOKEN_TTL_SECONDS",
            "must be at most 3600: access tokens are short-lived, refresh tokens renew them",
            "900",
        );
    }
    let refresh_token_ttl = r.positive_seconds("REFRESH_TOKEN_TTL_SECONDS", 14 * 86400, "1209600");
    if refresh_token_ttl > SESSION_ABSOLUTE_TTL {
        r.problem(
            "REFRESH_TOKEN_TTL_SECONDS",
            "must be at most 2592000 (30 days, the absolute session lifetime)",
            "1209600",
        );
    }
    if refresh_token_ttl <= access_token_ttl {
        r.problem(
            "REFRESH_TOKEN_TTL_SECONDS",
            "must be longer than ACCESS_TOKEN_TTL_SECONDS",
            "1209600",
        );
    }
    let grace = r.parsed(
        "REFRESH_REUSE_GRACE_SECONDS",
        10u64,
        "a whole number of seconds",
        "10",
    );
    if grace > 300 {
        r.problem("REFRESH_REUSE_GRACE_SECONDS", "must be at most 300", "10");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let password_hash_concurrency =
        r.parsed("PASSWORD_HASH_CONCURRENCY", cores, "a whole number", "2");
    if password_hash_concurrency == 0 {
        r.problem("PASSWORD_HASH_CONCURRENCY", "must be at least 1", "2");
    }
    AuthSettings {
        access_token_ttl,
        refresh_token_ttl,
        refresh_reuse_grace: Duration::from_secs(grace),
        password_hash_concurrency: password_hash_concurrency.max(1),
        admin_password: r.raw("AUTORISEN_ADMIN_PASSWORD").map(Secret::new),
    }
}
