//! Threads and messages: a message claims one `assistant_messages` use of the plan before it is
//! answered and gives it back when answering or storing fails; the question and the answer are
//! stored together, or neither.

use crate::{
    db::types::{from_micros, new_id},
    domains::{
        billing::{quota, types::Counter},
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
    provider::{Answer, Ask, Provider},
    thread_store::{self as store, MessageRow, ThreadRow},
    types::*,
};

const NO_THREAD: &str = "No such thread.";
const DEFAULT_TITLE: &str = "New conversation";
const COMPAT_TITLE: &str = "Cape AI chat";

fn not_found() -> AppError {
    AppError::NotFound(NO_THREAD.into())
}

fn thread_view(t: &ThreadRow) -> ThreadView {
    ThreadView {
        id: t.id.clone(),
        title: t.title.clone(),
        placement: Placement::parse(&t.placement),
        created_at: from_micros(t.created_at),
        updated_at: from_micros(t.updated_at),
    }
}

fn message_view(m: MessageRow) -> MessageView {
    MessageView {
        role: if m.role == "assistant" {
            Author::Assistant
        } else {
            Author::User
        },
        citations: serde_json::from_str(&m.citations).unwrap_or_default(),
        usage: TokenUsage {
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
        },
        id: m.id,
        content: m.content,
        provider: m.provider,
        model: m.model,
        status: m.status,
        created_at: from_micros(m.created_at),
    }
}

/// Checks a message's text (1 to 8000 characters, never truncated).
pub fn check_content(field: &str, content: &str) -> Result<String, AppError> {
    let mut v = Validator::new();
    let content = check(&mut v, field, CONTENT, content);
    v.finish()?;
    Ok(content)
}

/// Starts a thread of `user`.
pub async fn create_thread(
    state: &AppState,
    user: &User,
    req: NewThread,
) -> Result<ThreadView, AppError> {
    let mut v = Validator::new();
    let title = req.title.map(|t| check(&mut v, "title", THREAD_TITLE, &t));
    v.finish()?;
    let now = state.clock.now_micros();
    let row = ThreadRow {
        id: new_id(),
        title: title.unwrap_or_else(|| DEFAULT_TITLE.into()),
        placement: req.placement.unwrap_or_default().as_str().into(),
        created_at: now,
        updated_at: now,
    };
    let mut conn = state.db.pool().acquire().await?;
    store::insert_thread(&mut conn, &user.id, &row).await?;
    Ok(thread_view(&row))
}

/// One page of `user`'s threads.
pub async fn threads(
    state: &AppState,
    user: &User,
    page: &Pagination,
) -> Result<Page<ThreadView>, AppError> {
    let (rows, total) =
        store::threads(state.db.pool(), &user.id, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.iter().map(thread_view).collect(), total))
}

/// `user`'s thread `id` (404 for another user's, as for none).
pub async fn thread(state: &AppState, user: &User, id: &str) -> Result<ThreadRow, AppError> {
    store::thread_of(state.db.pool(), &user.id, id)
        .await?
        .ok_or_else(not_found)
}

/// A thread with its messages.
pub async fn detail(state: &AppState, user: &User, id: &str) -> Result<ThreadDetail, AppError> {
    let t = thread(state, user, id).await?;
    let messages = store::messages(state.db.pool(), &t.id).await?;
    Ok(ThreadDetail {
        thread: thread_view(&t),
        messages: messages.into_iter().map(message_view).collect(),
    })
}

/// Deletes a thread and its messages.
pub async fn delete_thread(state: &AppState, user: &User, id: &str) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    if !store::delete_thread(&mut tx, &user.id, id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(())
}

/// Answers `content` in `thread`: the plan's use is claimed first (429 `/problems/plan-limit`
/// over the limit, nothing stored) and given back if the answer or its storing fails.
pub async fn send(
    state: &AppState,
    user: &User,
    thread: &ThreadRow,
    content: String,
) -> Result<Exchange, AppError> {
    let taken = quota::consume(state, &user.id, Counter::AssistantMessages, 1).await?;
    let result = answer_and_store(state, user, thread, content).await;
    if result.is_err() {
        if let Err(e) = quota::release(state, &user.id, &taken, 1).await {
            tracing::warn!(error = %e, "could not give back the use of a failed message");
        }
    }
    result
}

async fn answer_and_store(
    state: &AppState,
    user: &User,
    thread: &ThreadRow,
    content: String,
) -> Result<Exchange, AppError> {
    let provider = state.get::<Provider>();
    let ask = Ask {
        question: &content,
        placement: Placement::parse(&thread.placement),
    };
    let Answer {
        content: reply,
        citations,
        usage,
    } = provider.answer(state, ask).await?;
    let now = state.clock.now_micros();
    let question = MessageRow {
        id: new_id(),
        thread_id: thread.id.clone(),
        role: "user".into(),
        content,
        provider: None,
        model: None,
        citations: "[]".into(),
        input_tokens: 0,
        output_tokens: 0,
        status: "completed".into(),
        created_at: now,
    };
    // A microsecond later, so the answer sorts after its question.
    let answer = MessageRow {
        id: new_id(),
        role: "assistant".into(),
        content: reply,
        provider: Some(provider.name().into()),
        model: Some(provider.model().into()),
        citations: serde_json::to_string(&citations).map_err(anyhow::Error::from)?,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        created_at: now + 1,
        ..question.clone()
    };
    let mut tx = state.db.begin().await?;
    store::insert_message(&mut tx, &user.id, &question).await?;
    store::insert_message(&mut tx, &user.id, &answer).await?;
    store::touch_thread(&mut tx, &thread.id, now + 1).await?;
    tx.commit().await?;
    Ok(Exchange {
        user_message: message_view(question),
        assistant_message: message_view(answer),
    })
}

/// The thread `POST /api/cape_ai/chat` writes to: one per user, made at the first message.
pub async fn compat_thread(state: &AppState, user: &User) -> Result<ThreadRow, AppError> {
    for _ in 0..2 {
        let mut tx = state.db.begin().await?;
        if let Some(id) = store::compat_thread(&mut tx, &user.id).await? {
            if let Some(t) = store::thread_of(&mut *tx, &user.id, &id).await? {
                return Ok(t);
            }
        }
        let now = state.clock.now_micros();
        let row = ThreadRow {
            id: new_id(),
            title: COMPAT_TITLE.into(),
            placement: Placement::General.as_str().into(),
            created_at: now,
            updated_at: now,
        };
        store::insert_thread(&mut tx, &user.id, &row).await?;
        if store::claim_compat_thread(&mut tx, &user.id, &row.id).await? {
            tx.commit().await?;
            return Ok(row);
        }
        // Another request of the same user made it first: read theirs.
    }
    Err(AppError::Conflict(
        "The conversation is being started by another request; retry.".into(),
    ))
}

/// This month's use of the assistant by `user`.
pub async fn usage(state: &AppState, user: &User) -> Result<AssistantUsage, AppError> {
    let view = quota::usage(state, &user.id).await?;
    let counter = view.counters.assistant_messages;
    let since = crate::db::types::to_micros(view.period_start);
    let (input_tokens, output_tokens) =
        store::tokens_since(state.db.pool(), &user.id, since).await?;
    Ok(AssistantUsage {
        period_start: view.period_start,
        resets_at: view.resets_at,
        messages: counter.used,
        limit: counter.limit,
        input_tokens,
        output_tokens,
        cost_cents: 0,
    })
}
