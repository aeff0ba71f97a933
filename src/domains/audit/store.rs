//! The SQL of the audit trail: insert, and filtered pages for admins and for users.

use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::types::{from_micros, new_id, now_micros};

use super::types::{AuditEntry, Event, Filter, RequestMeta};

/// Appends `event` on `conn`, which should be the transaction of the change it records.
pub async fn record(
    conn: &mut AnyConnection,
    meta: &RequestMeta,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor_id, action, target_id, outcome, ip, user_agent, \
         request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new_id())
    .bind(now_micros())
    .bind(event.actor.map(str::to_owned))
    .bind(event.action.to_owned())
    .bind(event.target.map(str::to_owned))
    .bind(event.outcome.as_str())
    .bind(meta.ip.clone())
    .bind(meta.user_agent.clone())
    .bind(meta.request_id.clone())
    .bind(event.details.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

enum Arg {
    Text(String),
    Int(i64),
}

/// One page of events matching `filter`, newest first, and the total count.
pub async fn list<'c, E>(
    db: E,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        clauses.push(clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(a) = &filter.actor {
        push("actor_id = ?", Arg::Text(a.clone()));
    }
    if let Some(a) = &filter.action {
        push("action = ?", Arg::Text(a.clone()));
    }
    if let Some(t) = &filter.target {
        push("target_id = ?", Arg::Text(t.clone()));
    }
    if let Some(f) = filter.from {
        push("at >= ?", Arg::Int(f));
    }
    if let Some(t) = filter.to {
        push("at < ?", Arg::Int(t));
    }
    if let Some(actions) = filter.actions_in {
        // Fixed names from the code, never from the client: safe to inline as literals.
        let list: Vec<String> = actions.iter().map(|a| format!("'{a}'")).collect();
        clauses.push(format!("action IN ({})", list.join(", ")));
    }
    let condition = if clauses.is_empty() {
        "1 = 1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    let count_sql = format!("SELECT COUNT(*) AS n FROM audit_events WHERE {condition}");
    let page_sql = format!(
        "SELECT id, at, actor_id, action, target_id, outcome, ip, user_agent, request_id, details \
         FROM audit_events WHERE {condition} ORDER BY at DESC, id DESC LIMIT {limit} OFFSET {offset}"
    );
    let mut count = sqlx::query(&count_sql);
    let mut page = sqlx::query(&page_sql);
    for arg in &args {
        match arg {
            Arg::Text(s) => {
                count = count.bind(s.clone());
                page = page.bind(s.clone());
            }
            Arg::Int(i) => {
                count = count.bind(*i);
                page = page.bind(*i);
            }
        }
    }
    let total: i64 = count.fetch_one(db).await?.try_get("n")?;
    let rows = page.fetch_all(db).await?;
    let entries = rows
        .iter()
        .map(|r| {
            let details: String = r.try_get("details")?;
            Ok(AuditEntry {
                id: r.try_get("id")?,
                at: from_micros(r.try_get("at")?),
                actor_id: r.try_get("actor_id")?,
                action: r.try_get("action")?,
                target_id: r.try_get("target_id")?,
                outcome: r.try_get("outcome")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
                request_id: r.try_get("request_id")?,
                details: serde_json::from_str(&details).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((entries, total))
}
