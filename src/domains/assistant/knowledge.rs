//! The knowledge base: admins' documents and the shipped help, split into chunks and indexed in
//! the transaction that writes them, and searched for passages.

use sha2::{Digest, Sha256};

use crate::{
    db::types::{from_micros, new_id},
    domains::{
        audit::{self, Event, Outcome, RequestMeta},
        users::User,
    },
    error::AppError,
    http::{
        pagination::{Page, Pagination},
        validate::Validator,
    },
    state::AppState,
};

use super::{
    chunk, help,
    store::{self, DocumentRow, NewDocumentRow},
    terms,
    types::*,
};

const NO_DOCUMENT: &str = "No such document.";

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn tags_of(row: &DocumentRow) -> Vec<String> {
    serde_json::from_str(&row.tags).unwrap_or_default()
}

fn view(row: DocumentRow) -> DocumentView {
    DocumentView {
        tags: tags_of(&row),
        id: row.id,
        slug: row.slug,
        title: row.title,
        body: row.body,
        chunks: row.chunks,
        created_at: from_micros(row.created_at),
        updated_at: from_micros(row.updated_at),
    }
}

/// Checks a new document: one 422 naming every invalid field.
pub fn check_new(doc: &NewDocument) -> Result<NewDocument, AppError> {
    let mut v = Validator::new();
    let title = check(&mut v, "title", TITLE, &doc.title);
    let body = check(&mut v, "body", BODY, &doc.body);
    let tags = check_tags(&mut v, "tags", &doc.tags);
    v.finish()?;
    Ok(NewDocument { title, body, tags })
}

/// Checks a patch.
pub fn check_patch(patch: &DocumentPatch) -> Result<DocumentPatch, AppError> {
    let mut v = Validator::new();
    let title = patch
        .title
        .as_ref()
        .map(|t| check(&mut v, "title", TITLE, t));
    let body = patch.body.as_ref().map(|b| check(&mut v, "body", BODY, b));
    let tags = patch.tags.as_ref().map(|t| check_tags(&mut v, "tags", t));
    v.finish()?;
    Ok(DocumentPatch { title, body, tags })
}

fn admin_event<'a>(admin: &'a User, action: &'a str, id: &'a str, title: &str) -> Event<'a> {
    Event {
        actor: Some(&admin.id),
        action,
        target: Some(id),
        outcome: Outcome::Success,
        details: serde_json::json!({ "title": title }),
    }
}

/// Stores a checked document with its chunks, and the audit row, in one transaction.
pub async fn create(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    doc: NewDocument,
) -> Result<DocumentView, AppError> {
    let id = new_id();
    let tags = tags_json(&doc.tags);
    let mut tx = state.db.begin().await?;
    let row = NewDocumentRow {
        id: &id,
        slug: None,
        title: &doc.title,
        body: &doc.body,
        tags: &tags,
        shipped_hash: None,
        created_by: Some(&admin.id),
        now: state.clock.now_micros(),
    };
    store::insert_document(&mut tx, &row).await?;
    let chunks = chunk::chunks(&doc.body);
    store::replace_chunks(&mut tx, &id, &doc.title, &doc.tags.join(" "), &chunks).await?;
    let event = admin_event(admin, "knowledge_document_created", &id, &doc.title);
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    get(state, &id).await
}

/// One document.
pub async fn get(state: &AppState, id: &str) -> Result<DocumentView, AppError> {
    let row = store::document_by_id(state.db.pool(), id).await?;
    row.map(view)
        .ok_or_else(|| AppError::NotFound(NO_DOCUMENT.into()))
}

/// One page of documents, latest changed first.
pub async fn list(state: &AppState, page: &Pagination) -> Result<Page<DocumentSummary>, AppError> {
    let (rows, total) = store::documents(state.db.pool(), page.limit(), page.offset()).await?;
    let items = rows
        .into_iter()
        .map(|r| {
            let v = view(r);
            DocumentSummary {
                id: v.id,
                slug: v.slug,
                title: v.title,
                tags: v.tags,
                chunks: v.chunks,
                created_at: v.created_at,
                updated_at: v.updated_at,
            }
        })
        .collect();
    Ok(page.wrap(items, total))
}

/// Applies a checked patch: the chunks are made again from the new text, in the transaction of
/// the change and its audit row.
pub async fn patch(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    id: &str,
    patch: DocumentPatch,
) -> Result<DocumentView, AppError> {
    let mut tx = state.db.begin().await?;
    let old = store::document_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound(NO_DOCUMENT.into()))?;
    let title = patch.title.unwrap_or_else(|| old.title.clone());
    let body = patch.body.unwrap_or_else(|| old.body.clone());
    let tags = patch.tags.unwrap_or_else(|| tags_of(&old));
    let now = state.clock.now_micros();
    store::update_document(&mut tx, id, &title, &body, &tags_json(&tags), None, now).await?;
    store::replace_chunks(&mut tx, id, &title, &tags.join(" "), &chunk::chunks(&body)).await?;
    let mut event = admin_event(admin, "knowledge_document_updated", id, &title);
    event.details["body_changed"] = (body != old.body).into();
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    get(state, id).await
}

/// Deletes a document, its chunks and their index entries, with an audit row.
pub async fn delete(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    id: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let old = store::document_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| AppError::NotFound(NO_DOCUMENT.into()))?;
    store::delete_document(&mut tx, id).await?;
    let event = admin_event(admin, "knowledge_document_deleted", id, &old.title);
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    Ok(())
}

/// The chunks that best match the words of `text`, best first; none when it has no searchable
/// word.
pub async fn passages(
    state: &AppState,
    text: &str,
    limit: i64,
) -> Result<Vec<store::Hit>, AppError> {
    let terms = terms::terms(text);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let backend = state.db.backend();
    let query = match backend {
        crate::db::Backend::Sqlite => terms::fts5_query(&terms),
        crate::db::Backend::Postgres => terms::tsquery(&terms),
    };
    Ok(store::search(state.db.pool(), backend, &query, limit).await?)
}

/// `GET /api/assistant/search`: ranked passages, each with its best sentences as the snippet.
pub async fn search(state: &AppState, q: &str) -> Result<Vec<Citation>, AppError> {
    let hits = passages(state, q, 10).await?;
    Ok(hits
        .into_iter()
        .map(|h| Citation {
            snippet: super::compose::snippet(&h.content, q).to_owned(),
            source_id: h.document_id,
            chunk_id: Some(h.chunk_id),
            title: h.title,
        })
        .collect())
}

fn hash(doc: &help::HelpDoc) -> String {
    let mut h = Sha256::new();
    for part in [doc.title, &doc.tags.join("\n"), doc.body] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Loads the shipped help, once: an article missing from the database is inserted (a concurrent
/// instance that inserted it first wins, by slug), one whose shipped text changed since it was
/// loaded is rewritten, and one that is current is left alone (an admin's edit of it stays
/// until a release changes the article). Returns how many articles were written.
pub async fn load_help(state: &AppState) -> anyhow::Result<usize> {
    // Read first, so that a start with nothing to write writes (and locks) nothing.
    let current = store::shipped_hashes(state.db.pool()).await?;
    let mut written = 0;
    for doc in help::HELP {
        let digest = hash(doc);
        let loaded = current
            .iter()
            .any(|(slug, h)| slug == doc.slug && h.as_deref() == Some(&digest));
        if loaded {
            continue;
        }
        let tags: Vec<String> = doc.tags.iter().map(|t| (*t).to_owned()).collect();
        let now = state.clock.now_micros();
        let mut tx = state.db.begin().await?;
        let id = match store::by_slug(&mut tx, doc.slug).await? {
            Some((_, Some(h))) if h == digest => continue,
            Some((id, _)) => {
                let json = tags_json(&tags);
                store::update_document(
                    &mut tx,
                    &id,
                    doc.title,
                    doc.body,
                    &json,
                    Some(&digest),
                    now,
                )
                .await?;
                id
            }
            None => {
                let id = new_id();
                let row = NewDocumentRow {
                    id: &id,
                    slug: Some(doc.slug),
                    title: doc.title,
                    body: doc.body,
                    tags: &tags_json(&tags),
                    shipped_hash: Some(&digest),
                    created_by: None,
                    now,
                };
                if !store::insert_document(&mut tx, &row).await? {
                    continue;
                }
                id
            }
        };
        let chunks = chunk::chunks(doc.body);
        store::replace_chunks(&mut tx, &id, doc.title, &tags.join(" "), &chunks).await?;
        tx.commit().await?;
        written += 1;
    }
    if written > 0 {
        tracing::info!(written, "loaded the shipped help into the knowledge base");
    }
    Ok(written)
}
