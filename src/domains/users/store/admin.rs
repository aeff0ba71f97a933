//! The SQL of the account listing admins page and search through.

use sqlx::{any::AnyRow, AnyPool, Row};

use crate::domains::users::Role;

const COLUMNS: &str = "id, email, role, first_name, last_name, CAST(is_active AS INTEGER) AS is_active, \
     CAST(email_verified AS INTEGER) AS email_verified, CAST(mfa_enabled AS INTEGER) AS mfa_enabled, \
     created_at, last_login_at, locked_until";

/// An account as listed for admins: no secrets, with its last login and lock.
#[derive(Debug, Clone)]
pub struct UserSummary {
    /// The id.
    pub id: String,
    /// The login address.
    pub email: String,
    /// The role.
    pub role: Role,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Whether the email is confirmed.
    pub email_verified: bool,
    /// Whether MFA is on.
    pub mfa_enabled: bool,
    /// Creation time (µs).
    pub created_at: i64,
    /// The last successful login (µs).
    pub last_login_at: Option<i64>,
    /// The stored lock end (µs), which may be in the past.
    pub locked_until: Option<i64>,
}

/// Which accounts a listing shows; every criterion is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserFilter<'a> {
    /// Only this role.
    pub role: Option<Role>,
    /// Text in email, first or last name (case-insensitive); blank means no text filter.
    pub text: Option<&'a str>,
    /// Only active (true) or inactive (false) accounts.
    pub active: Option<bool>,
}

fn summary(r: &AnyRow) -> Result<UserSummary, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(UserSummary {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        role: Role::from_db(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{role}`").into()))?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        is_active: r.try_get::<i64, _>("is_active")? != 0,
        email_verified: r.try_get::<i64, _>("email_verified")? != 0,
        mfa_enabled: r.try_get::<i64, _>("mfa_enabled")? != 0,
        created_at: r.try_get("created_at")?,
        last_login_at: r.try_get("last_login_at")?,
        locked_until: r.try_get("locked_until")?,
    })
}

/// One account by id.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<UserSummary>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(summary)
        .transpose()
}

/// `LIKE` pattern for `text` anywhere, with `%`, `_` and `\` escaped.
fn contains_pattern(text: &str) -> String {
    let escaped: String = text
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// The `WHERE` condition of `filter` and the texts it binds, in order.
fn condition(filter: &UserFilter<'_>) -> (String, Vec<String>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    if let Some(role) = filter.role {
        texts.push(role.as_str().to_owned());
        clauses.push(format!("role = ${}", texts.len()));
    }
    if let Some(q) = filter.text.filter(|q| !q.trim().is_empty()) {
        texts.push(contains_pattern(q.trim()));
        let n = texts.len();
        clauses.push(format!(
            "(LOWER(email) LIKE ${n} ESCAPE '\\' OR LOWER(first_name) LIKE ${n} ESCAPE '\\' OR LOWER(last_name) LIKE ${n} ESCAPE '\\')"
        ));
    }
    if let Some(active) = filter.active {
        // A fixed literal, not client text.
        clauses.push(if active {
            "is_active = TRUE".into()
        } else {
            "is_active = FALSE".into()
        });
    }
    if clauses.is_empty() {
        return ("1 = 1".to_owned(), texts);
    }
    (clauses.join(" AND "), texts)
}

/// One page (`limit` from `offset`) of the accounts matching `filter`, newest first, and the
/// total.
pub async fn list(
    pool: &AnyPool,
    filter: &UserFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserSummary>, i64), sqlx::Error> {
    let (condition, texts) = condition(filter);
    let count_sql = format!("SELECT COUNT(*) AS n FROM users WHERE {condition}");
    let page_sql = format!(
        "SELECT {COLUMNS} FROM users WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
    );
    let mut count = sqlx::query(&count_sql);
    let mut rows = sqlx::query(&page_sql);
    for t in &texts {
        count = count.bind(t.clone());
        rows = rows.bind(t.clone());
    }
    let total: i64 = count.fetch_one(pool).await?.try_get("n")?;
    let items = rows
        .fetch_all(pool)
        .await?
        .iter()
        .map(summary)
        .collect::<Result<_, _>>()?;
    Ok((items, total))
}
