//! Rate-limit policies: classes of routes, their quotas and modes, and which paths they cover.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

/// A class of routes sharing a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Every limited route, per client IP.
    General,
    /// Login, registration, password reset, email verification and MFA codes, per client IP.
    Auth,
    /// The assistant, per user (checked by its handlers through [`super::Edge::check_user`]).
    Ai,
}

impl Class {
    /// Every class, in the order policies are listed.
    pub const ALL: [Class; 3] = [Class::General, Class::Auth, Class::Ai];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Auth => "auth",
            Self::Ai => "ai",
        }
    }

    /// `RATE_LIMIT_<CLASS>`.
    pub fn var(self) -> &'static str {
        match self {
            Self::General => "RATE_LIMIT_GENERAL",
            Self::Auth => "RATE_LIMIT_AUTH",
            Self::Ai => "RATE_LIMIT_AI",
        }
    }

    /// `RATE_LIMIT_<CLASS>_MODE`.
    pub fn mode_var(self) -> &'static str {
        match self {
            Self::General => "RATE_LIMIT_GENERAL_MODE",
            Self::Auth => "RATE_LIMIT_AUTH_MODE",
            Self::Ai => "RATE_LIMIT_AI_MODE",
        }
    }

    /// The defaults: 600/min general, 10/min auth, 30/min and 500/hour for the assistant.
    pub fn default_quotas(self) -> Vec<Quota> {
        let q = |limit, window_secs| Quota { limit, window_secs };
        match self {
            Self::General => vec![q(600, 60)],
            Self::Auth => vec![q(10, 60)],
            Self::Ai => vec![q(30, 60), q(500, 3600)],
        }
    }
}

/// What a policy does with a request over its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse it with 429.
    Enforce,
    /// Count, log and report it, add the headers, refuse nothing.
    Shadow,
    /// Do not look at all.
    Off,
}

impl Mode {
    /// Parses `enforce`, `shadow` or `off`.
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "enforce" => Some(Self::Enforce),
            "shadow" => Some(Self::Shadow),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Enforce => "enforce",
            Self::Shadow => "shadow",
            Self::Off => "off",
        })
    }
}

/// `limit` requests per `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Quota {
    /// Requests allowed in a window (the burst).
    pub limit: u64,
    /// The window, in seconds, over which the budget refills completely.
    pub window_secs: u64,
}

impl Quota {
    /// Parses `N/SECONDS`, both above zero.
    pub fn parse(v: &str) -> Option<Self> {
        let (n, w) = v.split_once('/')?;
        let limit: u64 = n.trim().parse().ok().filter(|n| *n > 0)?;
        let window_secs: u64 = w.trim().parse().ok().filter(|w| *w > 0)?;
        Some(Self { limit, window_secs })
    }
}

/// One quota of one class, with its mode and the name shown in headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `general`, `auth`, or `ai-60s` when a class has several quotas.
    pub name: String,
    /// The class it belongs to.
    pub class: Class,
    /// Its quota.
    pub quota: Quota,
    /// Its mode.
    pub mode: Mode,
}

impl Policy {
    /// A policy named after its class (see [`Policy::name_all`]).
    pub fn new(class: Class, quota: Quota, mode: Mode) -> Self {
        let name = class.as_str().to_owned();
        Self {
            name,
            class,
            quota,
            mode,
        }
    }

    /// Suffixes the window to names of classes with several quotas, so every name is unique.
    pub fn name_all(policies: &mut [Policy]) {
        for class in Class::ALL {
            if policies.iter().filter(|p| p.class == class).count() > 1 {
                for p in policies.iter_mut().filter(|p| p.class == class) {
                    p.name = format!("{}-{}s", class.as_str(), p.quota.window_secs);
                }
            }
        }
    }
}

/// Probes, liveness, readiness and the docs: never limited, never banned, never shed.
pub fn is_exempt(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/alive" | "/ready" | "/api/health" | "/openapi.json" | "/version.json"
    ) || path == "/docs"
        || path.starts_with("/docs/")
}

/// Whether `path` is one of the credential or code endpoints of the `auth` class.
pub fn is_auth(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    matches!(
        path,
        "/api/auth/login"
            | "/api/auth/register"
            | "/api/auth/mfa/verify"
            | "/api/auth/mfa/enable"
            | "/api/auth/mfa/disable"
            | "/api/auth/v2/validate-email"
            | "/api/auth/v2/login"
            | "/api/auth/v2/register"
    ) || path.starts_with("/api/auth/password-reset/")
        || path == "/api/auth/password-reset"
        || path.starts_with("/api/auth/verify-email/")
        || path == "/api/auth/verify-email"
}

/// Paths only scanners ask for: asking raises the client's abuse score.
const PROBES: &[&str] = &[
    "/.env",
    "/.git",
    "/wp-admin",
    "/wp-login",
    "/wp-content",
    "/wp-includes",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/pma",
    "/myadmin",
    "/cgi-bin",
    "/.aws",
    "/.ssh",
    "/server-status",
    "/actuator",
    "/vendor/phpunit",
    "/boaform",
    "/config.php",
    "/.ds_store",
    "/.htaccess",
];

/// Whether `path` is a vulnerability probe.
pub fn is_probe(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    PROBES.iter().any(|p| {
        lower.starts_with(p)
            && matches!(
                lower.as_bytes().get(p.len()),
                None | Some(b'/' | b'.' | b'?' | b'-' | b'_')
            )
    }) || lower.ends_with(".php")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_paths_are_matched_by_prefix_where_they_have_children() {
        assert!(is_auth("/api/auth/login"));
        assert!(is_auth("/api/auth/password-reset/confirm"));
        assert!(is_auth("/api/auth/verify-email/resend"));
        assert!(!is_auth("/api/auth/logout"));
        assert!(!is_auth("/api/auth/loginx"));
    }

    #[test]
    fn probes_are_recognised_but_ordinary_paths_are_not() {
        assert!(is_probe("/.env"));
        assert!(is_probe("/wp-admin/setup.php"));
        assert!(is_probe("/PHPMyAdmin/"));
        assert!(!is_probe("/api/envelopes"));
        assert!(!is_probe("/.environment-docs"));
    }

    #[test]
    fn quotas_parse_only_positive_numbers() {
        assert_eq!(
            Quota::parse("600/60"),
            Some(Quota {
                limit: 600,
                window_secs: 60
            })
        );
        assert_eq!(Quota::parse("0/60"), None);
        assert_eq!(Quota::parse("10"), None);
    }
}
