//! The SQL of admin user listings.

use sqlx::{any::AnyRow, AnyPool, Row};

use crate::{db::types::from_micros, domains::users::Role};

use super::types::{AdminUserView, UserQuery};

const COLUMNS: &str = "id, email, role, first_name, last_name, CAST(is_active AS INTEGER) AS is_active, \
     CAST(email_verified AS INTEGER) AS email_verified, CAST(mfa_enabled AS INTEGER) AS mfa_enabled, \
     created_at, last_login_at, locked_until";

fn view(r: &AnyRow) -> Result<AdminUserView, sqlx::Error> {
    let role: String = r.try_get("role")?;
    let now = crate::db::types::now_micros();
    Ok(AdminUserView {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        role: Role::from_db(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{role}`").into()))?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        is_active: r.try_get::<i64, _>("is_active")? != 0,
        email_verified: r.try_get::<i64, _>("email_verified")? != 0,
        mfa_enabled: r.try_get::<i64, _>("mfa_enabled")? != 0,
        created_at: from_micros(r.try_get("created_at")?),
        last_login_at: r
            .try_get::<Option<i64>, _>("last_login_at")?
            .map(from_micros),
        locked_until: r
            .try_get::<Option<i64>, _>("locked_until")?
            .filter(|u| *u > now)
            .map(from_micros),
    })
}

/// One user by id.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<AdminUserView>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(view)
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

/// One page of users matching `query`, newest first, and the total.
pub async fn list(
    pool: &AnyPool,
    query: &UserQuery,
) -> Result<(Vec<AdminUserView>, i64), sqlx::Error> {
    let mut clauses: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    if let Some(role) = query.role {
        texts.push(role.as_str().to_owned());
        clauses.push(format!("role = ${}", texts.len()));
    }
    if let Some(q) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
        texts.push(contains_pattern(q.trim()));
        let n = texts.len();
        clauses.push(format!(
            "(LOWER(email) LIKE ${n} ESCAPE '\\' OR LOWER(first_name) LIKE ${n} ESCAPE '\\' OR LOWER(last_name) LIKE ${n} ESCAPE '\\')"
        ));
    }
    if let Some(active) = query.active {
        // A fixed literal, not client text.
        clauses.push(if active {
            "is_active = TRUE".into()
        } else {
            "is_active = FALSE".into()
        });
    }
    let condition = if clauses.is_empty() {
        "1 = 1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    let page = query.pagination();
    let count_sql = format!("SELECT COUNT(*) AS n FROM users WHERE {condition}");
    let page_sql = format!(
        "SELECT {COLUMNS} FROM users WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {}",
        page.limit(),
        page.offset()
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
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok((items, total))
}
