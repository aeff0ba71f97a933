//! `MAIL_*`: how outgoing mail leaves the process, and how its delivery jobs are retried.

use std::{path::PathBuf, time::Duration};

use lettre::message::Mailbox;
use url::Url;

use super::reader::{Environment, Reader, Secret};

const TRANSPORT_EXAMPLE: &str = "smtps://apikey:SECRET@smtp.example.com:465";
const FROM_EXAMPLE: &str = "CapeControl <no-reply@capecontrol.co.za>";
/// The sender used when `MAIL_FROM` is not set (log and file transports only).
const DEFAULT_FROM: &str = "CapeControl <no-reply@localhost>";

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://`: plain connect, then STARTTLS, which is required (default port 587).
    StartTls,
    /// `smtps://`: TLS from the first byte (default port 465).
    Implicit,
    /// `smtp://…?tls=none`: no TLS at all, for local sinks in development and test only.
    None,
}

/// Where an SMTP relay is and how to log in to it.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The relay's host name or address.
    pub host: String,
    /// The relay's port.
    pub port: u16,
    /// STARTTLS, implicit TLS or none.
    pub tls: SmtpTls,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded; never printed.
    pub password: Option<Secret>,
}

/// `MAIL_TRANSPORT`, parsed.
#[derive(Debug, Clone)]
pub enum TransportSetting {
    /// Deliver to an SMTP relay.
    Smtp(SmtpSettings),
    /// Write each message as an `.eml` file into this folder.
    File(PathBuf),
    /// Log recipient and template only (development and test).
    Log,
}

impl TransportSetting {
    /// `smtp`, `file` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Smtp(_) => "smtp",
            Self::File(_) => "file",
            Self::Log => "log",
        }
    }

    /// The setting as it may be printed: the password is replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        match self {
            Self::Log => "log".into(),
            Self::File(dir) => format!("file://{}", dir.display()),
            Self::Smtp(s) => {
                let scheme = if s.tls == SmtpTls::Implicit {
                    "smtps"
                } else {
                    "smtp"
                };
                let user = match (&s.username, &s.password) {
                    (Some(u), Some(_)) => format!("{u}:[redacted]@"),
                    (Some(u), None) => format!("{u}@"),
                    _ => String::new(),
                };
                let query = if s.tls == SmtpTls::None {
                    "?tls=none"
                } else {
                    ""
                };
                format!("{scheme}://{user}{}:{}{query}", s.host, s.port)
            }
        }
    }
}

/// Every `MAIL_*` setting.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `MAIL_TRANSPORT`.
    pub transport: TransportSetting,
    /// `MAIL_FROM`: the sender of every message.
    pub from: Mailbox,
    /// `MAIL_POLL_INTERVAL_MS`: from before the job runner; when set and `JOBS_POLL_INTERVAL_MS`
    /// is not, the runner polls this often.
    pub poll_interval: Duration,
    /// `MAIL_MAX_ATTEMPTS`: deliveries tried before a message is marked failed (its job's
    /// `max_attempts`).
    pub max_attempts: u32,
    /// `MAIL_RETRY_BASE_MS`: the first retry delay of a delivery job; it doubles after each
    /// failure (capped).
    pub retry_base: Duration,
    /// `MAIL_SEND_TIMEOUT_SECONDS`: the longest one delivery may take.
    pub send_timeout: Duration,
}

impl MailSettings {
    /// The settings as `(variable, value)` pairs, the SMTP password redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MAIL_TRANSPORT", self.transport.redacted()),
            ("MAIL_FROM", self.from.to_string()),
            (
                "MAIL_POLL_INTERVAL_MS",
                self.poll_interval.as_millis().to_string(),
            ),
            ("MAIL_MAX_ATTEMPTS", self.max_attempts.to_string()),
            (
                "MAIL_RETRY_BASE_MS",
                self.retry_base.as_millis().to_string(),
            ),
            (
                "MAIL_SEND_TIMEOUT_SECONDS",
                self.send_timeout.as_secs().to_string(),
            ),
        ]
    }
}

/// Reads and validates every `MAIL_*` variable, recording each problem in `r`.
pub(super) fn read(r: &mut Reader<'_>, env: Environment) -> MailSettings {
    let transport = transport(r, env);
    let from = from(r, &transport);
    let poll_ms = r.parsed(
        "MAIL_POLL_INTERVAL_MS",
        1000u64,
        "a number of milliseconds",
        "1000",
    );
    let max_attempts = r.parsed("MAIL_MAX_ATTEMPTS", 8u32, "a whole number", "8");
    let retry_ms = r.parsed(
        "MAIL_RETRY_BASE_MS",
        30_000u64,
        "a number of milliseconds",
        "30000",
    );
    for (var, value, example) in [
        ("MAIL_POLL_INTERVAL_MS", poll_ms, "1000"),
        ("MAIL_MAX_ATTEMPTS", u64::from(max_attempts), "8"),
        ("MAIL_RETRY_BASE_MS", retry_ms, "30000"),
    ] {
        if value == 0 {
            r.problem(var, "must be greater than zero", example);
        }
    }
    MailSettings {
        transport,
        from,
        poll_interval: Duration::from_millis(poll_ms.max(1)),
        max_attempts: max_attempts.max(1),
        retry_base: Duration::from_millis(retry_ms.max(1)),
        send_timeout: r.positive_seconds("MAIL_SEND_TIMEOUT_SECONDS", 30, "30"),
    }
}

fn transport(r: &mut Reader<'_>, env: Environment) -> TransportSetting {
    let Some(raw) = r.raw("MAIL_TRANSPORT") else {
        if env.is_deployed() {
            r.problem(
                "MAIL_TRANSPORT",
                "is required in staging and production",
                TRANSPORT_EXAMPLE,
            );
        }
        return TransportSetting::Log;
    };
    let raw = raw.trim();
    let setting = if raw.eq_ignore_ascii_case("log") {
        Some(TransportSetting::Log)
    } else {
        // Never echo the value: a mistyped scheme may still carry a password.
        match Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "smtp" | "smtps") => smtp(r, env, &url),
            Ok(url) if url.scheme() == "file" => file(r, &url),
            Ok(url) => {
                let scheme = url.scheme().to_owned();
                r.problem(
                    "MAIL_TRANSPORT",
                    format!("scheme `{scheme}` is not smtp, smtps, file or log"),
                    TRANSPORT_EXAMPLE,
                );
                None
            }
            Err(_) => {
                r.problem(
                    "MAIL_TRANSPORT",
                    "is not `log` nor a smtp://, smtps:// or file:// URL",
                    TRANSPORT_EXAMPLE,
                );
                None
            }
        }
    };
    let setting = setting.unwrap_or(TransportSetting::Log);
    if env == Environment::Production && !matches!(setting, TransportSetting::Smtp(_)) {
        r.problem(
            "MAIL_TRANSPORT",
            format!(
                "`{}` does not deliver mail; production requires smtp:// or smtps://",
                setting.kind()
            ),
            TRANSPORT_EXAMPLE,
        );
    }
    setting
}

fn smtp(r: &mut Reader<'_>, env: Environment, url: &Url) -> Option<TransportSetting> {
    let implicit = url.scheme() == "smtps";
    let mut tls = if implicit {
        SmtpTls::Implicit
    } else {
        SmtpTls::StartTls
    };
    let mut ok = true;
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("tls", "none") if !implicit => tls = SmtpTls::None,
            ("tls", "none") => {
                r.problem(
                    "MAIL_TRANSPORT",
                    "smtps:// cannot be combined with tls=none",
                    TRANSPORT_EXAMPLE,
                );
                ok = false;
            }
            _ => {
                r.problem(
                    "MAIL_TRANSPORT",
                    format!("unknown option `{key}` (only `tls=none` is understood)"),
                    TRANSPORT_EXAMPLE,
                );
                ok = false;
            }
        }
    }
    if tls == SmtpTls::None && env == Environment::Production {
        r.problem(
            "MAIL_TRANSPORT",
            "tls=none is refused in production",
            TRANSPORT_EXAMPLE,
        );
        ok = false;
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        r.problem("MAIL_TRANSPORT", "names no SMTP host", TRANSPORT_EXAMPLE);
        return None;
    };
    let username = Some(decode(url.username())).filter(|u| !u.is_empty());
    let password = url.password().map(|p| Secret::new(decode(p)));
    if username.is_some() != password.is_some() {
        r.problem(
            "MAIL_TRANSPORT",
            "gives a user name without a password or the reverse",
            TRANSPORT_EXAMPLE,
        );
        ok = false;
    }
    let port = url.port().unwrap_or(if implicit { 465 } else { 587 });
    ok.then(|| {
        TransportSetting::Smtp(SmtpSettings {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
            username,
            password,
        })
    })
}

fn file(r: &mut Reader<'_>, url: &Url) -> Option<TransportSetting> {
    match url.to_file_path() {
        Ok(dir) if url.host_str().is_none_or(str::is_empty) => Some(TransportSetting::File(dir)),
        _ => {
            r.problem(
                "MAIL_TRANSPORT",
                "a file:// URL must name an absolute folder (file:///var/mail/autorisen)",
                "file:///var/mail/autorisen",
            );
            None
        }
    }
}

fn from(r: &mut Reader<'_>, transport: &TransportSetting) -> Mailbox {
    let default = || DEFAULT_FROM.parse().expect("valid default sender");
    match r.raw("MAIL_FROM") {
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            r.problem(
                "MAIL_FROM",
                format!("`{v}` is not an email address or `Name <address>`"),
                FROM_EXAMPLE,
            );
            default()
        }),
        None => {
            if matches!(transport, TransportSetting::Smtp(_)) {
                r.problem(
                    "MAIL_FROM",
                    "is required when MAIL_TRANSPORT is smtp",
                    FROM_EXAMPLE,
                );
            }
            default()
        }
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(vars: &[(&str, &str)], env: Environment) -> (MailSettings, Vec<String>) {
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut r = Reader::new(&lookup);
        let s = read(&mut r, env);
        (
            s,
            r.into_problems()
                .into_iter()
                .map(|p| format!("{}: {}", p.var, p.problem))
                .collect(),
        )
    }

    #[test]
    fn smtp_urls_give_host_port_tls_and_decoded_credentials() {
        let (s, problems) = read_with(
            &[
                ("MAIL_TRANSPORT", "smtp://me%40x.io:p%2Fw@mail.example.com"),
                ("MAIL_FROM", "a@b.io"),
            ],
            Environment::Production,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let TransportSetting::Smtp(smtp) = &s.transport else {
            panic!("smtp")
        };
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("mail.example.com", 587, SmtpTls::StartTls)
        );
        assert_eq!(smtp.username.as_deref(), Some("me@x.io"));
        assert_eq!(smtp.password.as_ref().map(Secret::expose), Some("p/w"));
        assert!(
            !s.transport.redacted().contains("p/w") && !s.transport.redacted().contains("p%2Fw")
        );
    }

    #[test]
    fn smtps_defaults_to_port_465_and_plain_smtp_is_for_development_only() {
        let (s, _) = read_with(
            &[("MAIL_TRANSPORT", "smtps://h.io"), ("MAIL_FROM", "a@b.io")],
            Environment::Test,
        );
        let TransportSetting::Smtp(smtp) = s.transport else {
            panic!("smtp")
        };
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
        let (_, problems) = read_with(
            &[
                ("MAIL_TRANSPORT", "smtp://h.io:25?tls=none"),
                ("MAIL_FROM", "a@b.io"),
            ],
            Environment::Production,
        );
        assert!(
            problems.iter().any(|p| p.contains("tls=none is refused")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_scheme_is_reported_without_echoing_the_password() {
        let (_, problems) = read_with(
            &[("MAIL_TRANSPORT", "smpt://u:hunter2@h")],
            Environment::Test,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].contains("hunter2"));
    }
}
