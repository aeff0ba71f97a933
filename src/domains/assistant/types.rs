//! The assistant's requests, answers and the rules of their fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{
    openapi::{
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{ArrayBuilder, SchemaType},
        Array, Required, Type,
    },
    IntoParams, ToSchema,
};

use crate::{
    http::validate::{Kind, Text, Validator},
    text_schema,
};

/// A document's title.
pub const TITLE: Text = Text::new(Kind::NonBlank, 1, 200);
/// A document's markdown text (1,000,000 characters is "1 MB" of ordinary text).
pub const BODY: Text = Text::new(Kind::Multiline, 1, 1_000_000);
/// One tag.
pub const TAG: Text = Text::new(Kind::NonBlank, 1, 50);
/// The most tags of a document.
pub const MAX_TAGS: usize = 20;
/// A search.
pub const QUERY: Text = Text::new(Kind::Line, 1, 500);
/// A thread's title.
pub const THREAD_TITLE: Text = Text::new(Kind::NonBlank, 1, 200);
/// A message to the assistant: never truncated, refused when longer.
pub const CONTENT: Text = Text::new(Kind::Multiline, 1, 8000);

text_schema! {
    title_schema => TITLE, false;
    title_or_null => TITLE, true;
    body_schema => BODY, false;
    body_or_null => BODY, true;
    thread_title_or_null => THREAD_TITLE, true;
    content_schema => CONTENT, false;
}

fn tags_array(nullable: bool) -> Array {
    let ty = if nullable {
        SchemaType::from_iter([Type::Array, Type::Null])
    } else {
        SchemaType::Type(Type::Array)
    };
    ArrayBuilder::new()
        .schema_type(ty)
        .items(TAG.schema(false))
        .max_items(Some(MAX_TAGS))
        .build()
}

/// The schema of `tags`.
pub fn tags_schema() -> Array {
    tags_array(false)
}

/// The schema of `tags` in a patch.
pub fn tags_or_null() -> Array {
    tags_array(true)
}

/// Checks tags into `v`; returns them NFC-normalised.
pub fn check_tags(v: &mut Validator, field: &str, tags: &[String]) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        v.error(field, format!("must have at most {MAX_TAGS} tags"));
    }
    let mut out = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        match TAG.check(tag) {
            Ok(tag) => out.push(tag),
            Err(e) => v.error(&format!("{field}[{i}]"), e),
        }
    }
    out
}

/// Checks a text field into `v`; returns it NFC-normalised.
pub fn check(v: &mut Validator, field: &str, rule: Text, value: &str) -> String {
    rule.check(value).unwrap_or_else(|e| {
        v.error(field, e);
        value.to_owned()
    })
}

/// `POST /api/admin/knowledge`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// The title.
    #[schema(schema_with = title_schema)]
    pub title: String,
    /// The text, in markdown.
    #[schema(schema_with = body_schema)]
    pub body: String,
    /// Words the document is about (searched with the title's weight).
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Vec<String>,
}

/// `PATCH /api/admin/knowledge/{id}`: the fields given are set (`null` or absent: kept).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    /// A new title.
    #[schema(schema_with = title_or_null)]
    pub title: Option<String>,
    /// A new text.
    #[schema(schema_with = body_or_null)]
    pub body: Option<String>,
    /// New tags (replacing the old ones).
    #[schema(schema_with = tags_or_null)]
    pub tags: Option<Vec<String>>,
}

/// A knowledge-base document as admins see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    /// The id.
    pub id: String,
    /// The key of a help article shipped with the service; `null` for documents admins wrote.
    pub slug: Option<String>,
    /// The title.
    pub title: String,
    /// The markdown text.
    pub body: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// How many passages it was split into.
    pub chunks: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A document in a list (without its text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentSummary {
    /// The id.
    pub id: String,
    /// The key of a shipped help article, or `null`.
    pub slug: Option<String>,
    /// The title.
    pub title: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// How many passages it was split into.
    pub chunks: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/assistant/search?q=`.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchQuery {
    /// The words to look for.
    pub q: String,
}

// Written out: a derived parameter with `schema_with` is documented as optional.
impl IntoParams for SearchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("q")
            .parameter_in(ParameterIn::Query)
            .required(Required::True)
            .description(Some(
                "The words to look for (punctuation and search operators are ignored)",
            ))
            .schema(Some(QUERY.schema(false)))
            .build()]
    }
}

/// A passage of the knowledge base: a search hit, or what an answer cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    /// The document's id.
    pub source_id: String,
    /// The passage's id.
    pub chunk_id: Option<String>,
    /// The document's title.
    pub title: String,
    /// Text contained in the passage.
    pub snippet: String,
}

/// Where in the product a thread was started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Anywhere.
    #[default]
    General,
    /// The support page.
    Support,
    /// Onboarding.
    Onboarding,
    /// The developer pages.
    Developer,
    /// The billing pages.
    Billing,
}

impl Placement {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Support => "support",
            Self::Onboarding => "onboarding",
            Self::Developer => "developer",
            Self::Billing => "billing",
        }
    }

    /// Reads a stored name (unknown: general).
    pub fn parse(value: &str) -> Self {
        match value {
            "support" => Self::Support,
            "onboarding" => Self::Onboarding,
            "developer" => Self::Developer,
            "billing" => Self::Billing,
            _ => Self::General,
        }
    }
}

/// `POST /api/assistant/threads`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    /// A title (default "New conversation").
    #[schema(schema_with = thread_title_or_null)]
    pub title: Option<String>,
    /// Where it was started (default `general`).
    #[schema(nullable)]
    pub placement: Option<Placement>,
}

/// A thread.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThreadView {
    /// The id.
    pub id: String,
    /// The title.
    pub title: String,
    /// Where it was started.
    pub placement: Placement,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When its last message was sent.
    pub updated_at: DateTime<Utc>,
}

/// A thread with its messages, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThreadDetail {
    /// The thread.
    #[serde(flatten)]
    pub thread: ThreadView,
    /// Its messages, oldest first.
    pub messages: Vec<MessageView>,
}

/// `POST /api/assistant/threads/{id}/messages`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The question, 1 to 8000 characters.
    #[schema(schema_with = content_schema)]
    pub content: String,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// The tokens a provider counted for an answer (0 for the built-in provider).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenUsage {
    /// Tokens read.
    pub input_tokens: i64,
    /// Tokens written.
    pub output_tokens: i64,
}

/// A message of a thread.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// The id.
    pub id: String,
    /// Who wrote it.
    pub role: Author,
    /// The text.
    pub content: String,
    /// The provider that answered (`builtin`); `null` for the user's messages.
    pub provider: Option<String>,
    /// The provider's model; `null` for the user's messages.
    pub model: Option<String>,
    /// The passages the answer is based on.
    pub citations: Vec<Citation>,
    /// Tokens spent.
    pub usage: TokenUsage,
    /// `completed`.
    pub status: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// The answer to a message: the stored question and the assistant's reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Exchange {
    /// The user's message as stored.
    pub user_message: MessageView,
    /// The assistant's answer.
    pub assistant_message: MessageView,
}

/// `POST /api/cape_ai/chat` (the production client).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatChat {
    /// The question, 1 to 8000 characters.
    #[schema(schema_with = content_schema)]
    pub message: String,
    /// What the client knows about where the user is (kept by the client; not used yet).
    #[schema(value_type = Option<Object>, nullable)]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The answer of `POST /api/cape_ai/chat`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompatReply {
    /// The answer.
    pub response: String,
    /// The provider that answered.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// The user's thread for this route.
    pub thread_id: String,
}

/// `GET /api/assistant/usage`: this month's use of the assistant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssistantUsage {
    /// When this month began.
    pub period_start: DateTime<Utc>,
    /// When the counter starts again from zero.
    pub resets_at: DateTime<Utc>,
    /// Messages sent this month (the plan's `assistant_messages` counter).
    pub messages: i64,
    /// The plan's monthly limit.
    pub limit: i64,
    /// Tokens read by providers this month.
    pub input_tokens: i64,
    /// Tokens written by providers this month.
    pub output_tokens: i64,
    /// What the providers cost this month, in cents (0: the built-in provider is free).
    pub cost_cents: i64,
}
