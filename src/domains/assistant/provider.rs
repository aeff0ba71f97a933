//! Who answers a message. One enum, so that the external providers to come (Anthropic, OpenAI,
//! streaming) are variants with their clients, chosen at start; today there is the built-in one,
//! which needs no network and answers from the knowledge base.

use crate::{error::AppError, state::AppState};

use super::{
    compose, knowledge,
    types::{Citation, Placement, TokenUsage},
};

/// What a provider is asked.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The user's message.
    pub question: &'a str,
    /// Where the thread was started.
    pub placement: Placement,
}

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text.
    pub content: String,
    /// The passages it is based on.
    pub citations: Vec<Citation>,
    /// Tokens spent.
    pub usage: TokenUsage,
}

/// The provider that answers messages, kept in the state (`state.get::<Provider>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// Answers from the knowledge base: its best passages, quoted, with citations.
    Builtin,
}

/// How many passages the built-in provider reads.
const PASSAGES: i64 = 5;

/// The built-in provider's answer when the knowledge base has nothing on a question.
pub const NOTHING_FOUND: &str = "I could not find anything about that in the CapeControl help \
     articles. Try asking with other words (for example \"plans\", \"MFA\" or \"refunds\"), or \
     contact support.";

impl Provider {
    /// Its name, as answers report it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
        }
    }

    /// Its model, as answers report it.
    pub fn model(&self) -> &'static str {
        match self {
            Self::Builtin => "knowledge-base-v1",
        }
    }

    /// Answers `ask`.
    pub async fn answer(&self, state: &AppState, ask: Ask<'_>) -> Result<Answer, AppError> {
        match self {
            Self::Builtin => builtin(state, ask).await,
        }
    }
}

/// The best passage's best sentences, and a second document's when it matches the question as
/// well; each cited with the slice of the passage it quotes.
async fn builtin(state: &AppState, ask: Ask<'_>) -> Result<Answer, AppError> {
    let hits = knowledge::passages(state, ask.question, PASSAGES).await?;
    let Some(top) = hits.first() else {
        return Ok(Answer {
            content: NOTHING_FOUND.into(),
            citations: Vec::new(),
            usage: TokenUsage::default(),
        });
    };
    let stems = compose::stems(ask.question);
    let (chosen, best) = compose::pick(&top.content, &stems, 2);
    let mut text: Vec<String> = chosen.iter().map(|s| compose::plain(s)).collect();
    let mut citations = vec![Citation {
        source_id: top.document_id.clone(),
        chunk_id: Some(top.chunk_id.clone()),
        title: top.title.clone(),
        snippet: compose::span(&top.content, &chosen).to_owned(),
    }];
    let other = hits.iter().find(|h| h.document_id != top.document_id);
    if let Some(other) = other {
        let (more, score) = compose::pick(&other.content, &stems, 1);
        if best > 0 && score >= best {
            text.extend(more.iter().map(|s| compose::plain(s)));
            citations.push(Citation {
                source_id: other.document_id.clone(),
                chunk_id: Some(other.chunk_id.clone()),
                title: other.title.clone(),
                snippet: compose::span(&other.content, &more).to_owned(),
            });
        }
    }
    let sources: Vec<&str> = citations.iter().map(|c| c.title.as_str()).collect();
    let content = format!("{}\n\nSource: {}.", text.join(" "), sources.join("; "));
    Ok(Answer {
        content,
        citations,
        usage: TokenUsage::default(),
    })
}
