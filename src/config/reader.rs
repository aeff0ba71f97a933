//! The pieces every settings reader uses: the environment, secrets, problems, and [`Reader`],
//! which reads variables while collecting every problem. Domains read their own settings with it
//! (see [`DomainSettings`]).

use std::{any::Any, fmt, time::Duration};

use serde::Serialize;
use url::Url;

/// Where the service runs; decides defaults and how strict validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: relaxed defaults, `.env` is read, migrations run on start.
    Development,
    /// Automated tests.
    Test,
    /// A production-like deployment.
    Staging,
    /// The real thing.
    Production,
}

impl Environment {
    /// The lower-case name used in `AUTORISEN_ENV`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    /// Staging and production: secrets and explicit settings are required.
    pub fn is_deployed(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }

    /// Parses a name or its short form (`dev`, `prod`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Some(Self::Development),
            "test" => Some(Self::Test),
            "staging" => Some(Self::Staging),
            "production" | "prod" => Some(Self::Production),
            _ => None,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One thing wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// A valid value, as an example.
    pub example: &'static str,
}

/// Every problem found while loading the configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {}: {} (example: {})", p.var, p.problem, p.example)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while reading variables.
pub struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    /// A reader over `lookup` with no problems yet.
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

    /// The problems recorded so far.
    pub fn into_problems(self) -> Vec<ConfigProblem> {
        self.problems
    }

    /// The variable's value, when set and not blank.
    pub fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// Records a problem with `var`.
    pub fn problem(
        &mut self,
        var: &'static str,
        problem: impl Into<String>,
        example: &'static str,
    ) {
        self.problems.push(ConfigProblem {
            var,
            problem: problem.into(),
            example,
        });
    }

    /// Parses an optional variable, recording a problem (and returning the default) when invalid.
    pub fn parsed<T: std::str::FromStr>(
        &mut self,
        var: &'static str,
        default: T,
        what: &str,
        example: &'static str,
    ) -> T {
        match self.raw(var) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                self.problem(var, format!("`{v}` is not {what}"), example);
                default
            }),
        }
    }

    /// A boolean flag (`true/false`, `1/0`, `yes/no`, `on/off`); unset is false.
    pub fn flag(&mut self, var: &'static str) -> bool {
        match self.raw(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => false,
            Some(v) => {
                self.problem(var, format!("`{v}` is not a boolean"), "true");
                false
            }
        }
    }

    /// A whole number of seconds above zero.
    pub fn positive_seconds(
        &mut self,
        var: &'static str,
        default: u64,
        example: &'static str,
    ) -> Duration {
        let secs = self.parsed(var, default, "a whole number of seconds", example);
        if secs == 0 {
            self.problem(var, "must be greater than zero", example);
            return Duration::from_secs(default);
        }
        Duration::from_secs(secs)
    }
}

/// Replaces the password of a URL (if any) with `[redacted]`.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("[redacted]"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "[unparseable, redacted]".into(),
    }
}

/// The settings one domain reads for itself: shown, redacted, by `autorisen config check`.
pub trait DomainSettings: Any + Send + Sync + fmt::Debug {
    /// The effective values as `(variable, value)` pairs, every secret redacted.
    fn redacted(&self) -> Vec<(&'static str, String)>;
}

/// Reads one domain's settings, recording every problem in the reader. It sees the core facts
/// (environment, public URL) that its defaults may depend on.
pub type SettingsReader = fn(&mut Reader<'_>, &Core) -> std::sync::Arc<dyn DomainSettings>;

/// The core facts a domain's settings may depend on.
#[derive(Debug, Clone)]
pub struct Core {
    /// `AUTORISEN_ENV`.
    pub env: Environment,
    /// `PUBLIC_BASE_URL`.
    pub public_base_url: Url,
}
