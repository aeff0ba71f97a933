//! Typed settings read from the environment once, at start.
//!
//! [`Config::from_lookup`] validates every variable, the platform's and each domain's (through
//! the [`SettingsReader`]s it is given), and reports *all* problems in one [`ConfigErrors`], so an
//! operator fixes a deployment in one round instead of one crash at a time.

mod jobs;
mod mail;
pub mod reader;

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use serde::Serialize;
use url::Url;

pub use jobs::JobsSettings;
pub use mail::{MailSettings, SmtpSettings, SmtpTls, TransportSetting};
pub use reader::{
    redact_url, ConfigErrors, ConfigProblem, Core, DomainSettings, Environment, LogFormat, Reader,
    Secret, SettingsReader,
};

/// Build facts baked in at compile time, overridable at run time.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    /// `APP_VERSION`, else the crate version.
    pub version: String,
    /// `GIT_SHA`, else the commit the binary was built from.
    pub git_sha: String,
    /// `BUILD_TIME`, else when the binary was built (RFC 3339, UTC).
    pub build_time: String,
}

/// The validated configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTORISEN_ENV`.
    pub env: Environment,
    /// `HOST`: the address to listen on.
    pub host: IpAddr,
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`: `sqlite://…` or `postgres://…`; may hold a password.
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub database_max_connections: u32,
    /// `AUTORISEN_MIGRATE_ON_START` (always on in development and test).
    pub migrate_on_start: bool,
    /// `SECRET_KEY`: the root of every signing key.
    pub secret_key: Secret,
    /// `REDIS_URL`, when several instances share state.
    pub redis_url: Option<Secret>,
    /// `PUBLIC_BASE_URL`: how users reach the service (links in emails, cookie security).
    pub public_base_url: Url,
    /// `CORS_ORIGINS`: browser origins allowed to call the API.
    pub cors_origins: Vec<String>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `LOG_LEVEL`: a tracing filter such as `info` or `autorisen=debug,info`.
    pub log_level: String,
    /// `DATA_DIR`: where the SQLite file and the development key live.
    pub data_dir: PathBuf,
    /// `WEB_DIST_DIR`: a built front end to serve at `/`, if present.
    pub web_dist_dir: PathBuf,
    /// `REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `MAX_BODY_BYTES`: default request body limit.
    pub max_body_bytes: usize,
    /// Client address, rate limits, bans and connection limits (see `docs/edge.md`).
    pub edge: crate::edge::settings::EdgeSettings,
    /// Version, commit and build time.
    pub build: BuildInfo,
    /// `MAIL_*`: outgoing mail.
    pub mail: MailSettings,
    /// What each domain read for itself (see [`Config::domain`]).
    pub domains: Vec<Arc<dyn DomainSettings>>,
    /// `JOBS_*`: the job runner.
    pub jobs: JobsSettings,
}

/// Secret keys that appear in tutorials and templates; never acceptable outside development.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "super-secret",
    "development",
    "dev-secret",
    "test-secret",
    "insecure",
    "replace-me",
];

/// The minimum length of `SECRET_KEY` outside development.
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    /// Loads the configuration of this process from its environment.
    ///
    /// In development (the default) a `.env` file is read first; variables already set win.
    pub fn from_env(domains: &[SettingsReader]) -> Result<Self, ConfigErrors> {
        let declared = std::env::var("AUTORISEN_ENV").ok();
        if declared
            .as_deref()
            .and_then(Environment::parse)
            .unwrap_or(Environment::Development)
            == Environment::Development
        {
            let _ = dotenvy::dotenv();
        }
        Self::from_lookup(&|var| std::env::var(var).ok(), domains)
    }

    /// Loads the configuration from any source of variables (tests pass a map), with the
    /// settings of each domain whose reader is given.
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        domains: &[SettingsReader],
    ) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(lookup);
        let env = match r.raw("AUTORISEN_ENV") {
            None => Environment::Development,
            Some(v) => Environment::parse(&v).unwrap_or_else(|| {
                r.problem(
                    "AUTORISEN_ENV",
                    format!("`{v}` is not one of development, test, staging, production"),
                    "production",
                );
                Environment::Development
            }),
        };
        let default_host: IpAddr = if env == Environment::Development {
            [127, 0, 0, 1].into()
        } else {
            [0, 0, 0, 0].into()
        };
        let host = r.parsed("HOST", default_host, "an IP address", "0.0.0.0");
        let port = r.parsed("PORT", 8000u16, "a port number (0-65535)", "8000");
        let data_dir = PathBuf::from(r.raw("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = database_url(&mut r, env, &data_dir);
        let database_max_connections =
            r.parsed("DATABASE_MAX_CONNECTIONS", 16u32, "a whole number", "16");
        if database_max_connections == 0 {
            r.problem("DATABASE_MAX_CONNECTIONS", "must be at least 1", "16");
        }
        let migrate_on_start = r.flag("AUTORISEN_MIGRATE_ON_START") || !env.is_deployed();
        let secret_key = secret_key(&mut r, env, &data_dir);
        let redis_url = redis_url(&mut r);
        let public_base_url = public_base_url(&mut r, env, port);
        let cors_origins = cors_origins(&mut r, env, public_base_url.scheme() == "https");
        let log_format = match r.raw("LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
            None if env == Environment::Development => LogFormat::Pretty,
            None => LogFormat::Json,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "pretty" || v == "text" => LogFormat::Pretty,
            Some(v) => {
                r.problem("LOG_FORMAT", format!("`{v}` is not json or pretty"), "json");
                LogFormat::Json
            }
        };
        let log_level = r.raw("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            r.problem(
                "LOG_LEVEL",
                format!("`{log_level}` is not a log filter"),
                "info,autorisen=debug",
            );
        }
        let web_dist_dir =
            PathBuf::from(r.raw("WEB_DIST_DIR").unwrap_or_else(|| "web/dist".into()));
        let request_timeout = r.positive_seconds("REQUEST_TIMEOUT_SECONDS", 30, "30");
        let shutdown_grace = r.positive_seconds("SHUTDOWN_GRACE_SECONDS", 30, "30");
        let max_body_bytes = r.parsed(
            "MAX_BODY_BYTES",
            1024 * 1024usize,
            "a size in bytes",
            "1048576",
        );
        if max_body_bytes == 0 {
            r.problem("MAX_BODY_BYTES", "must be greater than zero", "1048576");
        }
        let mail = mail::read(&mut r, env);
        let mail_poll = r.raw("MAIL_POLL_INTERVAL_MS").map(|_| mail.poll_interval);
        let jobs = jobs::read(&mut r, mail_poll);
        let edge = crate::edge::settings::read(&mut r);
        let core = Core {
            env,
            public_base_url: public_base_url.clone(),
        };
        let domains = domains.iter().map(|read| read(&mut r, &core)).collect();
        let build = BuildInfo {
            version: r
                .raw("APP_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            git_sha: r
                .raw("GIT_SHA")
                .or_else(|| r.raw("SOURCE_VERSION"))
                .unwrap_or_else(|| env!("AUTORISEN_BUILD_GIT_SHA").into()),
            build_time: r
                .raw("BUILD_TIME")
                .unwrap_or_else(|| env!("AUTORISEN_BUILD_TIME").into()),
        };

        let problems = r.into_problems();
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Config {
            env,
            host,
            port,
            database_url,
            database_max_connections,
            migrate_on_start,
            secret_key,
            redis_url,
            public_base_url,
            cors_origins,
            log_format,
            log_level,
            data_dir,
            web_dist_dir,
            request_timeout,
            shutdown_grace,
            max_body_bytes,
            edge,
            build,
            mail,
            domains,
            jobs,
        })
    }

    /// The effective configuration as `(variable, value)` pairs, every secret redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTORISEN_ENV", self.env.as_str().into()),
            ("HOST", self.host.to_string()),
            ("PORT", self.port.to_string()),
            ("DATABASE_URL", redact_url(self.database_url.expose())),
            (
                "DATABASE_MAX_CONNECTIONS",
                self.database_max_connections.to_string(),
            ),
            (
                "AUTORISEN_MIGRATE_ON_START",
                self.migrate_on_start.to_string(),
            ),
            ("SECRET_KEY", "[redacted]".into()),
            (
                "REDIS_URL",
                self.redis_url
                    .as_ref()
                    .map_or_else(|| "(not set)".into(), |u| redact_url(u.expose())),
            ),
            ("PUBLIC_BASE_URL", self.public_base_url.to_string()),
            ("CORS_ORIGINS", self.cors_origins.join(",")),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("LOG_LEVEL", self.log_level.clone()),
            ("DATA_DIR", self.data_dir.display().to_string()),
            ("WEB_DIST_DIR", self.web_dist_dir.display().to_string()),
            (
                "REQUEST_TIMEOUT_SECONDS",
                self.request_timeout.as_secs().to_string(),
            ),
            (
                "SHUTDOWN_GRACE_SECONDS",
                self.shutdown_grace.as_secs().to_string(),
            ),
            ("MAX_BODY_BYTES", self.max_body_bytes.to_string()),
        ]
        .into_iter()
        .chain(self.edge.redacted())
        .chain([
            ("APP_VERSION", self.build.version.clone()),
            ("GIT_SHA", self.build.git_sha.clone()),
            ("BUILD_TIME", self.build.build_time.clone()),
        ])
        .chain(self.mail.redacted())
        .chain(self.domains.iter().flat_map(|d| d.redacted()))
        .chain(self.jobs.redacted())
        .collect()
    }

    /// The settings a domain read for itself.
    ///
    /// # Panics
    /// When that domain's reader was not given to [`Config::from_lookup`]: a wiring mistake.
    pub fn domain<T: DomainSettings>(&self) -> &T {
        self.domains
            .iter()
            .find_map(|d| (d.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
            .unwrap_or_else(|| panic!("no settings of type {}", std::any::type_name::<T>()))
    }

    /// Whether browsers reach the service over HTTPS (secure cookies, HSTS).
    pub fn is_https(&self) -> bool {
        self.public_base_url.scheme() == "https"
    }
}

fn database_url(r: &mut Reader<'_>, env: Environment, data_dir: &std::path::Path) -> Secret {
    const EXAMPLE: &str = "postgres://user:pass@host:5432/autorisen";
    let Some(url) = r.raw("DATABASE_URL") else {
        if env == Environment::Production {
            r.problem(
                "DATABASE_URL",
                "is required in production (the default SQLite file would live on an ephemeral disk)",
                EXAMPLE,
            );
        }
        return Secret::new(format!("sqlite://{}/autorisen.db", data_dir.display()));
    };
    let scheme = url.split(':').next().unwrap_or_default();
    if !matches!(scheme, "postgres" | "postgresql" | "sqlite") {
        r.problem(
            "DATABASE_URL",
            format!("scheme `{scheme}` is not postgres, postgresql or sqlite"),
            EXAMPLE,
        );
    } else if scheme != "sqlite" && Url::parse(&url).is_err() {
        r.problem("DATABASE_URL", "is not a valid URL", EXAMPLE);
    }
    Secret::new(url)
}

fn secret_key(r: &mut Reader<'_>, env: Environment, data_dir: &std::path::Path) -> Secret {
    const EXAMPLE: &str = "the output of `openssl rand -hex 32`";
    match r.raw("SECRET_KEY") {
        Some(key) if env != Environment::Development => {
            let lowered = key.trim().to_ascii_lowercase();
            if PLACEHOLDER_SECRETS
                .iter()
                .any(|p| lowered == *p || lowered.starts_with(p) && lowered.len() < 48)
            {
                r.problem(
                    "SECRET_KEY",
                    "is a known placeholder, not a secret",
                    EXAMPLE,
                );
            } else if key.len() < MIN_SECRET_BYTES {
                r.problem(
                    "SECRET_KEY",
                    format!(
                        "is {} bytes; at least {MIN_SECRET_BYTES} are required",
                        key.len()
                    ),
                    EXAMPLE,
                );
            }
            Secret::new(key)
        }
        Some(key) => Secret::new(key),
        None if env == Environment::Development => match development_key(data_dir) {
            Ok(key) => key,
            Err(e) => {
                r.problem(
                    "SECRET_KEY",
                    format!("is not set and no development key could be kept in DATA_DIR: {e}"),
                    EXAMPLE,
                );
                Secret::new(String::new())
            }
        },
        None => {
            r.problem(
                "SECRET_KEY",
                format!(
                    "is required outside development ({} bytes at least)",
                    MIN_SECRET_BYTES
                ),
                EXAMPLE,
            );
            Secret::new(String::new())
        }
    }
}

/// Reads the development key from `DATA_DIR`, creating it on first use so tokens survive restarts.
fn development_key(data_dir: &std::path::Path) -> std::io::Result<Secret> {
    let path = data_dir.join("dev-secret-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if existing.trim().len() >= MIN_SECRET_BYTES {
            return Ok(Secret::new(existing.trim().to_string()));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let key = hex::encode(rand::random::<[u8; 32]>());
    // Created private: written first and restricted after, the key would be readable by others
    // for a moment.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, key.as_bytes())?;
    Ok(Secret::new(key))
}

fn redis_url(r: &mut Reader<'_>) -> Option<Secret> {
    let url = r.raw("REDIS_URL")?;
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") => Some(Secret::new(url)),
        _ => {
            r.problem(
                "REDIS_URL",
                "is not a redis:// or rediss:// URL",
                "redis://127.0.0.1:6379/0",
            );
            None
        }
    }
}

fn public_base_url(r: &mut Reader<'_>, env: Environment, port: u16) -> Url {
    const EXAMPLE: &str = "https://app.capecontrol.co.za";
    let fallback = || Url::parse(&format!("http://localhost:{port}")).expect("valid URL");
    let Some(raw) = r.raw("PUBLIC_BASE_URL") else {
        if env.is_deployed() {
            r.problem(
                "PUBLIC_BASE_URL",
                "is required in staging and production",
                EXAMPLE,
            );
        }
        return fallback();
    };
    match Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if env == Environment::Production && url.scheme() != "https" {
                r.problem("PUBLIC_BASE_URL", "must be https in production", EXAMPLE);
            }
            url
        }
        _ => {
            r.problem(
                "PUBLIC_BASE_URL",
                format!("`{raw}` is not an http(s) URL"),
                EXAMPLE,
            );
            fallback()
        }
    }
}

fn cors_origins(r: &mut Reader<'_>, env: Environment, https: bool) -> Vec<String> {
    const EXAMPLE: &str = "https://app.capecontrol.co.za,https://www.capecontrol.co.za";
    let Some(raw) = r.raw("CORS_ORIGINS") else {
        return if env == Environment::Development {
            vec![
                "http://localhost:5173".into(),
                "http://127.0.0.1:5173".into(),
            ]
        } else {
            Vec::new()
        };
    };
    let mut origins = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            r.problem(
                "CORS_ORIGINS",
                "`*` is not allowed: the API uses credentials, so origins must be listed",
                EXAMPLE,
            );
            continue;
        }
        match Url::parse(item) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && !item.ends_with('/')
                    && u.query().is_none() =>
            {
                if https && u.scheme() == "http" {
                    // A page served over http can be altered in transit and then call the API
                    // with the user's credentials.
                    r.problem(
                        "CORS_ORIGINS",
                        format!("`{item}` is http while PUBLIC_BASE_URL is https"),
                        EXAMPLE,
                    );
                    continue;
                }
                origins.push(u.origin().ascii_serialization())
            }
            _ => r.problem(
                "CORS_ORIGINS",
                format!("`{item}` is not an origin (scheme://host[:port], no path)"),
                EXAMPLE,
            ),
        }
    }
    origins
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned(), &[])
    }

    fn vars_of(errors: ConfigErrors) -> Vec<&'static str> {
        errors.0.iter().map(|p| p.var).collect()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef-real-key";

    #[test]
    fn production_without_settings_reports_every_missing_variable_at_once() {
        let errors = load(&[("AUTORISEN_ENV", "production"), ("PORT", "eighty")]).unwrap_err();
        let vars = vars_of(errors);
        for var in ["PORT", "DATABASE_URL", "SECRET_KEY", "PUBLIC_BASE_URL"] {
            assert!(vars.contains(&var), "{var} missing from {vars:?}");
        }
    }

    #[test]
    fn placeholder_and_short_secret_keys_are_refused_outside_development() {
        for key in [
            "change-me",
            "your-secret-key-goes-here",
            "CHANGEME",
            "short",
        ] {
            let errors = load(&[("AUTORISEN_ENV", "test"), ("SECRET_KEY", key)]).unwrap_err();
            assert_eq!(vars_of(errors), vec!["SECRET_KEY"], "{key}");
        }
        assert!(load(&[("AUTORISEN_ENV", "test"), ("SECRET_KEY", KEY)]).is_ok());
    }

    #[test]
    fn production_requires_an_https_public_base_url() {
        let errors = load(&[
            ("AUTORISEN_ENV", "production"),
            ("SECRET_KEY", KEY),
            ("DATABASE_URL", "postgres://db/app"),
            ("PUBLIC_BASE_URL", "http://app.example.test"),
            ("MAIL_TRANSPORT", "smtps://mailer:pw@smtp.example.test:465"),
            ("MAIL_FROM", "CapeControl <no-reply@example.test>"),
        ])
        .unwrap_err();
        assert_eq!(vars_of(errors), vec!["PUBLIC_BASE_URL"]);
    }

    #[test]
    fn both_postgres_url_schemes_are_accepted_and_others_refused() {
        for url in [
            "postgres://u:p@h:5432/db",
            "postgresql://u:p@h/db?sslmode=require",
        ] {
            let c = load(&[
                ("AUTORISEN_ENV", "test"),
                ("SECRET_KEY", KEY),
                ("DATABASE_URL", url),
            ])
            .unwrap();
            assert_eq!(c.database_url.expose(), url);
        }
        let errors = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("DATABASE_URL", "mysql://h/db"),
        ])
        .unwrap_err();
        assert_eq!(vars_of(errors), vec!["DATABASE_URL"]);
    }

    #[test]
    fn a_wildcard_or_a_path_in_cors_origins_is_refused() {
        let errors = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("CORS_ORIGINS", "*,https://a.example/path"),
        ])
        .unwrap_err();
        assert_eq!(vars_of(errors), vec!["CORS_ORIGINS", "CORS_ORIGINS"]);
        let c = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("CORS_ORIGINS", " https://a.example , http://b.example:5173"),
        ])
        .unwrap();
        assert_eq!(
            c.cors_origins,
            vec!["https://a.example", "http://b.example:5173"]
        );
    }

    /// Issue 15, point 9.
    #[test]
    fn http_origins_are_refused_when_the_service_is_https() {
        let errors = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("PUBLIC_BASE_URL", "https://app.example"),
            ("CORS_ORIGINS", "https://a.example,http://b.example"),
        ])
        .unwrap_err();
        assert_eq!(vars_of(errors), vec!["CORS_ORIGINS"]);
    }

    /// Issue 15, point 9.
    #[test]
    fn trusting_every_address_as_a_proxy_is_refused() {
        for every in ["0.0.0.0/0", "::/0", "10.0.0.0/8, ::/0"] {
            let errors = load(&[
                ("AUTORISEN_ENV", "test"),
                ("SECRET_KEY", KEY),
                ("TRUSTED_PROXIES", every),
            ])
            .unwrap_err();
            assert_eq!(vars_of(errors), vec!["TRUSTED_PROXIES"], "{every}");
        }
        let c = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
        ])
        .unwrap();
        assert_eq!(c.edge.trusted_proxies.len(), 2);
    }

    #[test]
    fn development_keeps_a_generated_key_in_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        let second = load(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        assert!(first.secret_key.expose().len() >= MIN_SECRET_BYTES);
        assert_eq!(first.secret_key, second.secret_key);
        assert_eq!(first.host.to_string(), "127.0.0.1");
        assert_eq!(first.log_format, LogFormat::Pretty);
    }

    #[cfg(unix)]
    #[test]
    fn the_development_key_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        load(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        let mode = std::fs::metadata(data.join("dev-secret-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[test]
    fn secrets_never_show_in_debug_output_or_the_redacted_listing() {
        let c = load(&[
            ("AUTORISEN_ENV", "test"),
            ("SECRET_KEY", KEY),
            ("DATABASE_URL", "postgres://app:pw-123456@db/app"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains(KEY) && !debug.contains("pw-123456"),
            "{debug}"
        );
        let listing = format!("{:?}", c.redacted());
        assert!(
            !listing.contains(KEY) && !listing.contains("pw-123456"),
            "{listing}"
        );
    }
}
