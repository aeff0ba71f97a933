//! The SQL of threads and messages. Every read of a thread is by its owner: another user's
//! thread is not found, like a missing one.

use sqlx::{any::AnyRow, Any, AnyConnection, Executor, Row};

/// A stored thread.
#[derive(Debug, Clone)]
pub struct ThreadRow {
    pub id: String,
    pub title: String,
    pub placement: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn thread(r: &AnyRow) -> Result<ThreadRow, sqlx::Error> {
    Ok(ThreadRow {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        placement: r.try_get("placement")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Inserts a thread of `user`.
pub async fn insert_thread(
    conn: &mut AnyConnection,
    user: &str,
    t: &ThreadRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO assistant_threads (id, user_id, title, placement, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.id.clone())
    .bind(user.to_owned())
    .bind(t.title.clone())
    .bind(t.placement.clone())
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The thread `id` of `user`.
pub async fn thread_of<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
    id: &str,
) -> Result<Option<ThreadRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, title, placement, created_at, updated_at FROM assistant_threads \
         WHERE id = $1 AND user_id = $2",
    )
    .bind(id.to_owned())
    .bind(user.to_owned())
    .fetch_optional(db)
    .await?;
    row.as_ref().map(thread).transpose()
}

/// One page of `user`'s threads, latest active first, and how many there are.
pub async fn threads<'c, E>(
    db: E,
    user: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ThreadRow>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let rows = sqlx::query(
        "SELECT id, title, placement, created_at, updated_at FROM assistant_threads \
         WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3",
    )
    .bind(user.to_owned())
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM assistant_threads WHERE user_id = $1")
        .bind(user.to_owned())
        .fetch_one(db)
        .await?
        .try_get("n")?;
    Ok((rows.iter().map(thread).collect::<Result<_, _>>()?, total))
}

/// Deletes the thread `id` of `user` with its messages; `false` when there was none.
pub async fn delete_thread(
    conn: &mut AnyConnection,
    user: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let owned = thread_of(&mut *conn, user, id).await?.is_some();
    if !owned {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM assistant_messages WHERE thread_id = $1",
        "DELETE FROM assistant_compat_threads WHERE thread_id = $1",
        "DELETE FROM assistant_threads WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// Marks the thread as active at `now`.
pub async fn touch_thread(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE assistant_threads SET updated_at = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// The thread of `user` for the compatibility route, if one was made.
pub async fn compat_thread(
    conn: &mut AnyConnection,
    user: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT thread_id FROM assistant_compat_threads WHERE user_id = $1")
        .bind(user.to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get("thread_id")).transpose()
}

/// Names `thread` the compatibility thread of `user` unless one already is; `false` then.
pub async fn claim_compat_thread(
    conn: &mut AnyConnection,
    user: &str,
    thread: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO assistant_compat_threads (user_id, thread_id) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user.to_owned())
    .bind(thread.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A stored message.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub thread_id: String,
    pub role: String,
    pub content: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub citations: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub status: String,
    pub created_at: i64,
}

/// Inserts a message of `user`.
pub async fn insert_message(
    conn: &mut AnyConnection,
    user: &str,
    m: &MessageRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO assistant_messages (id, thread_id, user_id, role, content, provider, model, \
         citations, input_tokens, output_tokens, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(m.id.clone())
    .bind(m.thread_id.clone())
    .bind(user.to_owned())
    .bind(m.role.clone())
    .bind(m.content.clone())
    .bind(m.provider.clone())
    .bind(m.model.clone())
    .bind(m.citations.clone())
    .bind(m.input_tokens)
    .bind(m.output_tokens)
    .bind(m.status.clone())
    .bind(m.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The messages of a thread, oldest first.
pub async fn messages<'c>(
    db: impl Executor<'c, Database = Any>,
    thread: &str,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, thread_id, role, content, provider, model, citations, input_tokens, \
         output_tokens, status, created_at FROM assistant_messages WHERE thread_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(thread.to_owned())
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MessageRow {
                id: r.try_get("id")?,
                thread_id: r.try_get("thread_id")?,
                role: r.try_get("role")?,
                content: r.try_get("content")?,
                provider: r.try_get("provider")?,
                model: r.try_get("model")?,
                citations: r.try_get("citations")?,
                input_tokens: r.try_get("input_tokens")?,
                output_tokens: r.try_get("output_tokens")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// The tokens of `user`'s answers since `since`: (input, output).
pub async fn tokens_since<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
    since: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS i, \
         CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS o \
         FROM assistant_messages WHERE user_id = $1 AND created_at >= $2",
    )
    .bind(user.to_owned())
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok((row.try_get("i")?, row.try_get("o")?))
}
