//! `autorisen import-users FILE`: brings in the production `users_v2` table from a JSON-lines or
//! CSV export. Old bcrypt hashes are kept (users log in with their old password and are moved to
//! argon2id then). Idempotent: an email already present is skipped, so a second run changes
//! nothing. Every line is accounted for: imported, skipped or rejected, with its number.
//!
//! The original system let anyone register as ADMIN, so an exported ADMIN role is not trusted:
//! such users come in as customers (and are listed) unless `--trust-admin-role` is given.

use crate::http::validate as text;
use std::{collections::HashMap, io::BufRead, path::Path};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{
    db::{types::new_id, Db},
    domains::audit::{self, Event, Outcome, RequestMeta},
};

use super::{
    profile,
    store::{self, NewUser},
    Email, Role,
};

/// How many rows share one transaction.
const BATCH: usize = 500;
/// How often progress is reported, in lines.
const PROGRESS_EVERY: usize = 1000;

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header row, then one row per user.
    Csv,
}

/// Options of an import run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The format; guessed from the extension or first character when absent.
    pub format: Option<Format>,
    /// Keep ADMIN roles from the export (otherwise they become customers).
    pub trust_admin_role: bool,
}

/// What happened to every line.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Users created.
    pub imported: usize,
    /// `(line, reason)` of lines left alone (email already present).
    pub skipped: Vec<(usize, String)>,
    /// `(line, reason)` of invalid lines.
    pub rejected: Vec<(usize, String)>,
    /// Lines whose ADMIN role was not trusted.
    pub demoted: Vec<usize>,
}

/// A line as text fields.
type Raw = HashMap<String, String>;

fn field<'a>(raw: &'a Raw, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| raw.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn parse_bool(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(false),
        Some("true" | "t" | "1" | "yes") => Ok(true),
        Some("false" | "f" | "0" | "no") => Ok(false),
        Some(other) => Err(format!("is_verified `{other}` is not a boolean")),
    }
}

fn parse_time(value: Option<&str>) -> Result<i64, String> {
    let Some(v) = value.map(str::trim) else {
        return Ok(crate::db::types::now_micros());
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc).timestamp_micros());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(v, fmt) {
            return Ok(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(format!("created_at `{v}` is not a date-time"))
}

/// Validates one line into a new user; the bool says whether an ADMIN role was demoted.
fn to_user(raw: &Raw, options: &Options) -> Result<(NewUser, bool), String> {
    let email = Email::parse(field(raw, &["email"]).unwrap_or_default())
        .map_err(|e| format!("email {e}"))?;
    let hash =
        field(raw, &["password_hash", "hashed_password"]).ok_or("password_hash is missing")?;
    if !hash.starts_with("$2b$") && !hash.starts_with("$2a$") && !hash.starts_with("$2y$") {
        return Err("password_hash is not a bcrypt hash ($2b$)".into());
    }
    hash.parse::<bcrypt::HashParts>()
        .map_err(|e| format!("password_hash is malformed: {e}"))?;
    let (role, demoted) = match field(raw, &["role", "user_role"])
        .unwrap_or("CUSTOMER")
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "CUSTOMER" | "CLIENT" | "USER" => (Role::Customer, false),
        "DEVELOPER" => (Role::Developer, false),
        "ADMIN" if options.trust_admin_role => (Role::Admin, false),
        "ADMIN" => (Role::Customer, true),
        other => {
            return Err(format!(
                "role `{other}` is not CUSTOMER, DEVELOPER or ADMIN"
            ))
        }
    };
    let name = |n: &str| {
        text::clean(field(raw, &[n]).unwrap_or_default(), 100, false)
            .map_err(|e| format!("{n} {e}"))
    };
    let (first_name, last_name) = (name("first_name")?, name("last_name")?);
    let mut profile = profile::empty(role);
    if let Some(company) = field(raw, &["company", "company_name"]).filter(|_| role != Role::Admin)
    {
        let patch = serde_json::json!({"company_name": company});
        profile = profile::merge(role, &profile, &patch, "")
            .map_err(|e| format!("company {}", e[0].message))?;
    }
    let user = NewUser {
        id: new_id(),
        email: email.as_str().to_owned(),
        password_hash: hash.to_owned(),
        role,
        first_name,
        last_name,
        profile,
        email_verified: parse_bool(field(raw, &["is_verified", "email_verified"]))?,
        created_at: parse_time(field(raw, &["created_at"]))?,
    };
    Ok((user, demoted))
}

fn guess_format(path: &Path, first_line: &str) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Format::Csv,
        Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
        _ if first_line.trim_start().starts_with('{') => Format::Jsonl,
        _ => Format::Csv,
    }
}

/// Reads every line of `path` as `(line number, fields or a reason it cannot be read)`.
fn read(path: &Path, format: Option<Format>) -> anyhow::Result<Vec<(usize, Result<Raw, String>)>> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut lines = std::io::BufReader::new(file);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let format = format.unwrap_or_else(|| guess_format(path, &first));
    let reader = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(match format {
        Format::Jsonl => reader
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(|(i, line)| {
                (
                    i + 1,
                    line.map_err(|e| e.to_string())
                        .and_then(|l| json_fields(&l)),
                )
            })
            .collect(),
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(reader);
            let headers: Vec<String> = csv
                .headers()?
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            csv.records()
                .map(|r| match r {
                    Ok(rec) => {
                        let line = rec.position().map_or(0, |p| p.line() as usize);
                        (
                            line,
                            Ok(headers
                                .iter()
                                .cloned()
                                .zip(rec.iter().map(str::to_owned))
                                .collect()),
                        )
                    }
                    Err(e) => (
                        e.position().map_or(0, |p| p.line() as usize),
                        Err(e.to_string()),
                    ),
                })
                .collect()
        }
    })
}

fn json_fields(line: &str) -> Result<Raw, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let map = value.as_object().ok_or("not a JSON object")?;
    Ok(map
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((k.to_ascii_lowercase(), text))
        })
        .collect())
}

/// Imports `path` into `db`, reporting progress on stderr for large files.
pub async fn run(db: &Db, path: &Path, options: &Options) -> anyhow::Result<Report> {
    let rows = read(path, options.format)?;
    let total = rows.len();
    let meta = RequestMeta::cli();
    let mut report = Report::default();
    for (n, chunk) in rows.chunks(BATCH).enumerate() {
        let mut tx = db.begin().await?;
        for (line, raw) in chunk {
            let parsed = raw.clone().and_then(|raw| to_user(&raw, options));
            let (user, demoted) = match parsed {
                Ok(ok) => ok,
                Err(reason) => {
                    report.rejected.push((*line, reason));
                    continue;
                }
            };
            if !store::insert_if_new(&mut *tx, &user).await? {
                report
                    .skipped
                    .push((*line, format!("{} already exists", user.email)));
                continue;
            }
            if demoted {
                report.demoted.push(*line);
            }
            let details = serde_json::json!({"source": "users_v2", "line": line, "admin_role_not_trusted": demoted});
            let event = Event {
                actor: None,
                action: "user_imported",
                target: Some(&user.id),
                outcome: Outcome::Success,
                details,
            };
            audit::record(&mut tx, &meta, event).await?;
            report.imported += 1;
        }
        tx.commit().await?;
        let done = ((n + 1) * BATCH).min(total);
        if total > PROGRESS_EVERY && (done % PROGRESS_EVERY < BATCH || done == total) {
            eprintln!(
                "import-users: {done}/{total} lines ({} imported, {} skipped, {} rejected)",
                report.imported,
                report.skipped.len(),
                report.rejected.len()
            );
        }
    }
    Ok(report)
}
