//! Health and status documents.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ok {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The overall verdict of `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every dependency answers.
    Healthy,
    /// The service answers, but an optional dependency (Redis) does not.
    Degraded,
    /// The database does not answer: the service cannot do its work.
    Unhealthy,
}

/// The state of one dependency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// Why the check failed (never a host name or a credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// The verdict.
    pub status: Verdict,
    /// The running version.
    pub version: String,
    /// Seconds since the process started serving.
    pub uptime_s: u64,
    /// One entry per dependency: `database` always, `redis` when configured.
    pub checks: BTreeMap<&'static str, Check>,
}

/// `GET /api/status`: what this process is and which subsystems are really on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Always `autorisen`.
    pub service: &'static str,
    /// The running version.
    pub version: String,
    /// The commit the binary was built from.
    pub git_sha: String,
    /// When the binary was built (RFC 3339).
    pub build_time: String,
    /// `development`, `test`, `staging` or `production`.
    pub environment: &'static str,
    /// The server's clock (RFC 3339, UTC).
    pub server_time: String,
    /// Seconds since the process started serving.
    pub uptime_s: u64,
    /// The database backend in use: `sqlite` or `postgres`.
    pub database: crate::db::Backend,
    /// Where outgoing mail goes: `smtp`, `file` or `log` (not delivered).
    #[schema(example = "smtp")]
    pub mail_transport: &'static str,
    /// Subsystem name → whether it is active in this process.
    pub features: BTreeMap<&'static str, bool>,
    /// Log lines dropped since start because the log writer could not keep up (never blocks a
    /// request instead).
    pub log_lines_dropped: u64,
}

/// `GET /version.json`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// The running version.
    pub version: String,
    /// The commit the binary was built from.
    pub git_sha: String,
    /// When the binary was built (RFC 3339).
    pub build_time: String,
}
