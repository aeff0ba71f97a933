//! Rate-limit policies: classes of routes, their quotas and modes, and which paths they cover.

use std::fmt::{self, Write};

use axum::http::HeaderValue;

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
    /// Whether it is the aggregate budget of an IPv6 /48 (`RATE_LIMIT_IPV6_48`), kept per /48 on
    /// top of the per-client budgets, rather than a budget per client.
    pub ipv6_48: bool,
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
            ipv6_48: false,
        }
    }

    /// The aggregate budget of every IPv6 client in one /48, named `general-ipv6-48`.
    pub fn ipv6_48(quota: Quota, mode: Mode) -> Self {
        Self {
            name: "general-ipv6-48".into(),
            class: Class::General,
            quota,
            mode,
            ipv6_48: true,
        }
    }

    /// Suffixes the window to names of classes with several quotas, so every name is unique.
    pub fn name_all(policies: &mut [Policy]) {
        for class in Class::ALL {
            let of_class = |p: &Policy| p.class == class && !p.ipv6_48;
            if policies.iter().filter(|p| of_class(p)).count() > 1 {
                for p in policies.iter_mut().filter(|p| of_class(p)) {
                    p.name = format!("{}-{}s", class.as_str(), p.quota.window_secs);
                }
            }
        }
    }
}

/// `"general";q=600;w=60, "auth";q=10;w=60` for the policies at `which`.
pub fn policy_value(policies: &[Policy], which: &[usize]) -> Option<HeaderValue> {
    let mut out = String::new();
    for &i in which {
        let p = &policies[i];
        let sep = if out.is_empty() { "" } else { ", " };
        let _ = write!(
            out,
            "{sep}\"{}\";q={};w={}",
            p.name, p.quota.limit, p.quota.window_secs
        );
    }
    HeaderValue::from_str(&out).ok().filter(|_| !out.is_empty())
}

/// How the edge treats a route, as its domain declares it (see [`RouteRule`]). Routes no rule
/// names are `general`: limited per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Probes, liveness, readiness and the docs: never limited, never banned, never shed, and
    /// logged at debug level only.
    Exempt,
    /// Credential and code endpoints: the `auth` policies per client IP, on top of `general`.
    Auth,
    /// Signed notifications from payment providers: banned clients and in-flight caps apply,
    /// per-IP rate limits do not (a provider retries in bursts from a few addresses).
    Webhook,
}

/// One path, or a path and everything under it, and its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    /// The path, without a trailing slash.
    pub path: &'static str,
    /// Whether the paths under `path` (`path/...`) are covered too.
    pub subtree: bool,
    /// The class.
    pub class: RouteClass,
}

impl RouteRule {
    /// Exactly `path`.
    pub const fn exact(path: &'static str, class: RouteClass) -> Self {
        Self {
            path,
            subtree: false,
            class,
        }
    }

    /// `path` and every path under it.
    pub const fn subtree(path: &'static str, class: RouteClass) -> Self {
        Self {
            path,
            subtree: true,
            class,
        }
    }
}

/// Every domain's route rules, merged; looked up once per request.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: std::collections::HashMap<&'static str, RouteClass>,
    subtrees: Vec<(&'static str, RouteClass)>,
}

impl RouteTable {
    /// A table of `rules`; a later rule for the same path wins.
    pub fn new(rules: impl IntoIterator<Item = RouteRule>) -> Self {
        let mut table = Self::default();
        for rule in rules {
            table.exact.insert(rule.path, rule.class);
            if rule.subtree {
                table.subtrees.push((rule.path, rule.class));
            }
        }
        table
    }

    /// The class of `path` (one trailing slash ignored), if a rule names it.
    pub fn class_of(&self, path: &str) -> Option<RouteClass> {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        if let Some(class) = self.exact.get(path) {
            return Some(*class);
        }
        self.subtrees.iter().find_map(|(root, class)| {
            path.strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
                .then_some(*class)
        })
    }

    /// The paths of the rules of `class`.
    pub fn paths(&self, class: RouteClass) -> Vec<&'static str> {
        let mut paths: Vec<_> = self
            .exact
            .iter()
            .filter(|(_, c)| **c == class)
            .map(|(p, _)| *p)
            .collect();
        paths.sort_unstable();
        paths
    }
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
    fn rules_match_their_path_and_only_a_subtree_rule_matches_below_it() {
        let table = RouteTable::new([
            RouteRule::exact("/api/auth/login", RouteClass::Auth),
            RouteRule::subtree("/api/auth/password-reset", RouteClass::Auth),
            RouteRule::subtree("/docs", RouteClass::Exempt),
        ]);
        assert_eq!(table.class_of("/api/auth/login"), Some(RouteClass::Auth));
        assert_eq!(table.class_of("/api/auth/login/"), Some(RouteClass::Auth));
        assert_eq!(
            table.class_of("/api/auth/password-reset/confirm"),
            Some(RouteClass::Auth)
        );
        assert_eq!(table.class_of("/docs/"), Some(RouteClass::Exempt));
        assert_eq!(table.class_of("/api/auth/logout"), None);
        assert_eq!(table.class_of("/api/auth/loginx"), None);
        assert_eq!(table.class_of("/api/auth/login/x"), None);
        assert_eq!(table.class_of("/"), None);
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
