//! Assistant handlers: the knowledge base (admins), search, threads and messages, usage, and the
//! production client's chat route.

use axum::{
    extract::{DefaultBodyLimit, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::{
        audit::RequestMeta,
        auth::extract::{AdminUser, AuthUser},
    },
    error::{AppError, Problem},
    http::{
        json::AppJson,
        pagination::{Page, Pagination},
        query::AppQuery,
        validate::{known_id, Validator},
    },
    state::AppState,
};

use super::{knowledge, service, types::*};

/// A document's JSON may hold 1,000,000 characters of text, each up to 4 bytes of UTF-8 (more
/// when escaped): the body limit of the knowledge routes.
const KNOWLEDGE_BODY_BYTES: usize = 8 * 1024 * 1024;

const NO_DOCUMENT: &str = "No such document.";
const NO_THREAD: &str = "No such thread.";

/// The routes of this domain.
pub fn routes() -> OpenApiRouter<AppState> {
    let knowledge = OpenApiRouter::new()
        .routes(routes!(create_document, list_documents))
        .routes(routes!(get_document, patch_document, delete_document))
        .layer(DefaultBodyLimit::max(KNOWLEDGE_BODY_BYTES));
    OpenApiRouter::new()
        .merge(knowledge)
        .routes(routes!(search))
        .routes(routes!(create_thread, list_threads))
        .routes(routes!(get_thread, delete_thread))
        .routes(routes!(post_message))
        .routes(routes!(usage))
        .routes(routes!(compat_chat))
}

/// Adds a document to the knowledge base; it is split into passages and indexed at once.
#[utoipa::path(post, path = "/api/admin/knowledge", tag = "assistant", security(("bearerAuth" = [])), request_body = NewDocument, responses(
    (status = 201, description = "The document", body = DocumentView),
    (status = 403, description = "Not an admin, or the client address is banned", body = Problem, content_type = "application/problem+json")))]
async fn create_document(
    State(state): State<AppState>,
    meta: RequestMeta,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<NewDocument>,
) -> Result<(StatusCode, AppJson<DocumentView>), AppError> {
    let doc = knowledge::check_new(&req)?;
    let view = knowledge::create(&state, &meta, &admin.user, doc).await?;
    Ok((StatusCode::CREATED, AppJson(view)))
}

/// The knowledge base's documents (without their text), latest changed first.
#[utoipa::path(get, path = "/api/admin/knowledge", tag = "assistant", security(("bearerAuth" = [])), params(Pagination), responses(
    (status = 200, description = "One page of documents", body = Page<DocumentSummary>),
    (status = 403, description = "Not an admin, or the client address is banned", body = Problem, content_type = "application/problem+json")))]
async fn list_documents(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(page): AppQuery<Pagination>,
) -> Result<AppJson<Page<DocumentSummary>>, AppError> {
    Ok(AppJson(knowledge::list(&state, &page).await?))
}

/// One document with its text.
#[utoipa::path(get, path = "/api/admin/knowledge/{id}", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Document id")), responses(
    (status = 200, description = "The document", body = DocumentView),
    (status = 403, description = "Not an admin, or the client address is banned", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json")))]
async fn get_document(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<AppJson<DocumentView>, AppError> {
    known_id(&id, NO_DOCUMENT)?;
    Ok(AppJson(knowledge::get(&state, &id).await?))
}

/// Changes a document's title, text or tags; its passages are made again.
#[utoipa::path(patch, path = "/api/admin/knowledge/{id}", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Document id")), request_body = DocumentPatch, responses(
    (status = 200, description = "The document", body = DocumentView),
    (status = 403, description = "Not an admin, or the client address is banned", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json")))]
async fn patch_document(
    State(state): State<AppState>,
    meta: RequestMeta,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    AppJson(req): AppJson<DocumentPatch>,
) -> Result<AppJson<DocumentView>, AppError> {
    known_id(&id, NO_DOCUMENT)?;
    let patch = knowledge::check_patch(&req)?;
    let view = knowledge::patch(&state, &meta, &admin.user, &id, patch).await?;
    Ok(AppJson(view))
}

/// Deletes a document and its passages.
#[utoipa::path(delete, path = "/api/admin/knowledge/{id}", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Document id")), responses(
    (status = 204, description = "Deleted"),
    (status = 403, description = "Not an admin, or the client address is banned", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json")))]
async fn delete_document(
    State(state): State<AppState>,
    meta: RequestMeta,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    known_id(&id, NO_DOCUMENT)?;
    knowledge::delete(&state, &meta, &admin.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Passages of the knowledge base that match the words of `q`, best first (at most 10).
#[utoipa::path(get, path = "/api/assistant/search", tag = "assistant", security(("bearerAuth" = [])), params(SearchQuery), responses(
    (status = 200, description = "Ranked passages (none when `q` has no searchable word)", body = Vec<Citation>)))]
async fn search(
    State(state): State<AppState>,
    _me: AuthUser,
    AppQuery(q): AppQuery<SearchQuery>,
) -> Result<AppJson<Vec<Citation>>, AppError> {
    let mut v = Validator::new();
    let q = check(&mut v, "q", QUERY, &q.q);
    v.finish()?;
    Ok(AppJson(knowledge::search(&state, &q).await?))
}

/// Starts a thread.
#[utoipa::path(post, path = "/api/assistant/threads", tag = "assistant", security(("bearerAuth" = [])), request_body = NewThread, responses(
    (status = 201, description = "The thread", body = ThreadView)))]
async fn create_thread(
    State(state): State<AppState>,
    me: AuthUser,
    AppJson(req): AppJson<NewThread>,
) -> Result<(StatusCode, AppJson<ThreadView>), AppError> {
    let view = service::create_thread(&state, &me.user, req).await?;
    Ok((StatusCode::CREATED, AppJson(view)))
}

/// The caller's threads, latest active first.
#[utoipa::path(get, path = "/api/assistant/threads", tag = "assistant", security(("bearerAuth" = [])), params(Pagination), responses(
    (status = 200, description = "One page of threads", body = Page<ThreadView>)))]
async fn list_threads(
    State(state): State<AppState>,
    me: AuthUser,
    AppQuery(page): AppQuery<Pagination>,
) -> Result<AppJson<Page<ThreadView>>, AppError> {
    Ok(AppJson(service::threads(&state, &me.user, &page).await?))
}

/// One of the caller's threads with its messages.
#[utoipa::path(get, path = "/api/assistant/threads/{id}", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Thread id")), responses(
    (status = 200, description = "The thread and its messages, oldest first", body = ThreadDetail),
    (status = 404, description = "No such thread, or another user's", body = Problem, content_type = "application/problem+json")))]
async fn get_thread(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<AppJson<ThreadDetail>, AppError> {
    known_id(&id, NO_THREAD)?;
    Ok(AppJson(service::detail(&state, &me.user, &id).await?))
}

/// Deletes one of the caller's threads with its messages.
#[utoipa::path(delete, path = "/api/assistant/threads/{id}", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Thread id")), responses(
    (status = 204, description = "Deleted"),
    (status = 404, description = "No such thread, or another user's", body = Problem, content_type = "application/problem+json")))]
async fn delete_thread(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    known_id(&id, NO_THREAD)?;
    service::delete_thread(&state, &me.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Spends one request of the caller's `ai` rate limit: the refusal is the answer.
async fn spend_ai_budget(state: &AppState, user: &str) -> Result<(), Response> {
    state.edge.check_user(user).await.into_response().map(drop)
}

/// Asks the assistant in a thread: the question and the answer, with citations (not streamed).
#[utoipa::path(post, path = "/api/assistant/threads/{id}/messages", tag = "assistant", security(("bearerAuth" = [])), params(("id" = uuid::Uuid, Path, description = "Thread id")), request_body = NewMessage, responses(
    (status = 201, description = "The stored question and the assistant's answer", body = Exchange),
    (status = 404, description = "No such thread, or another user's", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the `ai` rate limit, or over the plan's monthly assistant messages (`/problems/plan-limit`, members as `PlanLimitProblem`); nothing is stored", body = Problem, content_type = "application/problem+json")))]
async fn post_message(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<String>,
    AppJson(req): AppJson<NewMessage>,
) -> Result<Response, AppError> {
    known_id(&id, NO_THREAD)?;
    let content = service::check_content("content", &req.content)?;
    let thread = service::thread(&state, &me.user, &id).await?;
    if let Err(refused) = spend_ai_budget(&state, &me.user.id).await {
        return Ok(refused);
    }
    let exchange = service::send(&state, &me.user, &thread, content).await?;
    Ok((StatusCode::CREATED, AppJson(exchange)).into_response())
}

/// The caller's use of the assistant this month.
#[utoipa::path(get, path = "/api/assistant/usage", operation_id = "assistant_usage", tag = "assistant", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Messages against the plan's limit; tokens and cost (0 for the built-in provider)", body = AssistantUsage)))]
async fn usage(
    State(state): State<AppState>,
    me: AuthUser,
) -> Result<AppJson<AssistantUsage>, AppError> {
    Ok(AppJson(service::usage(&state, &me.user).await?))
}

/// The production client's chat: one thread per user, answered like a message in it.
#[utoipa::path(post, path = "/api/cape_ai/chat", tag = "assistant", security(("bearerAuth" = [])), request_body = CompatChat, responses(
    (status = 200, description = "The answer", body = CompatReply),
    (status = 429, description = "Over the `ai` rate limit, or over the plan's monthly assistant messages (`/problems/plan-limit`); nothing is stored", body = Problem, content_type = "application/problem+json")))]
async fn compat_chat(
    State(state): State<AppState>,
    me: AuthUser,
    AppJson(req): AppJson<CompatChat>,
) -> Result<Response, AppError> {
    let content = service::check_content("message", &req.message)?;
    if let Err(refused) = spend_ai_budget(&state, &me.user.id).await {
        return Ok(refused);
    }
    let thread = service::compat_thread(&state, &me.user).await?;
    let exchange = service::send(&state, &me.user, &thread, content).await?;
    let answer = exchange.assistant_message;
    let reply = CompatReply {
        response: answer.content,
        provider: answer.provider.unwrap_or_default(),
        model: answer.model.unwrap_or_default(),
        thread_id: thread.id,
    };
    Ok(AppJson(reply).into_response())
}
