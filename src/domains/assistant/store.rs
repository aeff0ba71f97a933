//! The SQL of the assistant: knowledge documents and their chunks, threads and messages. The one
//! dialect-specific query is the full-text search.

use sqlx::{any::AnyRow, Any, AnyConnection, Executor, Row};

use crate::db::Backend;

/// A stored document (`body` is empty when listed).
#[derive(Debug, Clone)]
pub struct DocumentRow {
    pub id: String,
    pub slug: Option<String>,
    pub title: String,
    pub body: String,
    pub tags: String,
    pub chunks: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn document(r: &AnyRow, with_body: bool) -> Result<DocumentRow, sqlx::Error> {
    Ok(DocumentRow {
        id: r.try_get("id")?,
        slug: r.try_get("slug")?,
        title: r.try_get("title")?,
        body: if with_body {
            r.try_get("body")?
        } else {
            String::new()
        },
        tags: r.try_get("tags")?,
        chunks: r.try_get("chunks")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const DOCUMENT: &str = "SELECT d.id, d.slug, d.title, d.body, d.tags, d.created_at, d.updated_at, \
     (SELECT COUNT(*) FROM knowledge_chunks k WHERE k.document_id = d.id) AS chunks \
     FROM knowledge_documents d";

/// The document with `id`.
pub async fn document_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<DocumentRow>, sqlx::Error> {
    let row = sqlx::query(&format!("{DOCUMENT} WHERE d.id = $1"))
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?;
    row.map(|r| document(&r, true)).transpose()
}

/// One page of documents, latest changed first, and how many there are.
pub async fn documents<'c, E>(
    db: E,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DocumentRow>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let rows = sqlx::query(&format!(
        "{DOCUMENT} ORDER BY d.updated_at DESC, d.id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM knowledge_documents")
        .fetch_one(db)
        .await?
        .try_get("n")?;
    let rows = rows.iter().map(|r| document(r, false));
    Ok((rows.collect::<Result<_, _>>()?, total))
}

/// What a document is written from.
pub struct NewDocumentRow<'a> {
    pub id: &'a str,
    pub slug: Option<&'a str>,
    pub title: &'a str,
    pub body: &'a str,
    pub tags: &'a str,
    pub shipped_hash: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

/// Inserts a document; `false` when its slug is taken (another instance loaded it first).
pub async fn insert_document(
    conn: &mut AnyConnection,
    d: &NewDocumentRow<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO knowledge_documents \
         (id, slug, title, body, tags, shipped_hash, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (slug) DO NOTHING",
    )
    .bind(d.id.to_owned())
    .bind(d.slug.map(str::to_owned))
    .bind(d.title.to_owned())
    .bind(d.body.to_owned())
    .bind(d.tags.to_owned())
    .bind(d.shipped_hash.map(str::to_owned))
    .bind(d.created_by.map(str::to_owned))
    .bind(d.now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a document's title, text and tags (and the hash of the shipped text it now holds).
pub async fn update_document(
    conn: &mut AnyConnection,
    id: &str,
    title: &str,
    body: &str,
    tags: &str,
    shipped_hash: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE knowledge_documents SET title = $2, body = $3, tags = $4, \
         shipped_hash = COALESCE($5, shipped_hash), updated_at = $6 WHERE id = $1",
    )
    .bind(id.to_owned())
    .bind(title.to_owned())
    .bind(body.to_owned())
    .bind(tags.to_owned())
    .bind(shipped_hash.map(str::to_owned))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a document and its chunks (and so their index entries); `false` when there was none.
pub async fn delete_document(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    delete_chunks(&mut *conn, id).await?;
    let done = sqlx::query("DELETE FROM knowledge_documents WHERE id = $1")
        .bind(id.to_owned())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The id and shipped-text hash of the document with `slug`.
pub async fn by_slug(
    conn: &mut AnyConnection,
    slug: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let row = sqlx::query("SELECT id, shipped_hash FROM knowledge_documents WHERE slug = $1")
        .bind(slug.to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("shipped_hash")?)))
        .transpose()
}

/// The shipped-text hash of every shipped article, by slug.
pub async fn shipped_hashes<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT slug, shipped_hash FROM knowledge_documents WHERE slug IS NOT NULL")
            .fetch_all(db)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("slug")?, r.try_get("shipped_hash")?)))
        .collect()
}

async fn delete_chunks(conn: &mut AnyConnection, document: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1")
        .bind(document.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces a document's chunks; the full-text index follows in the same transaction (a
/// generated column on PostgreSQL, triggers on SQLite).
pub async fn replace_chunks(
    conn: &mut AnyConnection,
    document: &str,
    title: &str,
    tags: &str,
    chunks: &[String],
) -> Result<(), sqlx::Error> {
    delete_chunks(&mut *conn, document).await?;
    for (i, content) in chunks.iter().enumerate() {
        sqlx::query(
            "INSERT INTO knowledge_chunks (id, document_id, position, title, tags, content) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(crate::db::types::new_id())
        .bind(document.to_owned())
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .bind(title.to_owned())
        .bind(tags.to_owned())
        .bind(content.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A chunk found by a search.
#[derive(Debug, Clone)]
pub struct Hit {
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    pub content: String,
}

/// The best `limit` chunks for `query`, best first: an FTS5 `MATCH` expression ranked by BM25
/// with the title and tags weighing four times the text, or a `to_tsquery` text ranked by
/// `ts_rank` (title and tags weighted A, text B; divided by the log of the length).
pub async fn search<'c>(
    db: impl Executor<'c, Database = Any>,
    backend: Backend,
    query: &str,
    limit: i64,
) -> Result<Vec<Hit>, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT c.id, c.document_id, c.title, c.content \
             FROM knowledge_fts f JOIN knowledge_chunks c ON c.id = f.chunk_id \
             WHERE knowledge_fts MATCH $1 \
             ORDER BY bm25(knowledge_fts, 0.0, 4.0, 1.0), c.document_id, c.position LIMIT $2"
        }
        Backend::Postgres => {
            "SELECT c.id, c.document_id, c.title, c.content \
             FROM knowledge_chunks c, to_tsquery('english', $1) q WHERE c.search @@ q \
             ORDER BY ts_rank(c.search, q, 1) DESC, c.document_id, c.position LIMIT $2"
        }
    };
    let rows = sqlx::query(sql)
        .bind(query.to_owned())
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Hit {
                chunk_id: r.try_get("id")?,
                document_id: r.try_get("document_id")?,
                title: r.try_get("title")?,
                content: r.try_get("content")?,
            })
        })
        .collect()
}
