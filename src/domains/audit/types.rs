//! Audit events, the request facts they carry, and their API view.

use axum::{extract::FromRequestParts, http::request::Parts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{client::ClientAddr, request_id::current_request_id};

/// Who made a request and from where, stamped on every audit event.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client's address.
    pub ip: String,
    /// The `User-Agent` header (at most 512 characters are kept: it is a log field, not data).
    pub user_agent: String,
    /// The request id.
    pub request_id: String,
}

impl RequestMeta {
    /// The meta of work started outside HTTP (the command line).
    pub fn cli() -> Self {
        Self {
            ip: String::new(),
            user_agent: "autorisen-cli".into(),
            request_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ClientAddr(ip) = ClientAddr::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(512)
            .collect();
        Ok(Self {
            ip: ip.to_string(),
            user_agent,
            request_id: current_request_id().unwrap_or_default(),
        })
    }
}

/// Whether the recorded action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and refused.
    Failure,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One security event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Who did it (a user id), if known.
    pub actor: Option<&'a str>,
    /// What happened, as `snake_case` (`login`, `password_changed`, `user_role_changed`…).
    pub action: &'a str,
    /// Whom it affected (a user id), if anyone.
    pub target: Option<&'a str>,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// Small facts (a reason, a new role); never a secret.
    pub details: serde_json::Value,
}

impl<'a> Event<'a> {
    /// A successful action by `user` on their own account.
    pub fn own(user: &'a str, action: &'a str) -> Self {
        Self {
            actor: Some(user),
            action,
            target: Some(user),
            outcome: Outcome::Success,
            details: serde_json::json!({}),
        }
    }

    /// The same event with details.
    pub fn with(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The same event, marked as refused.
    pub fn failed(mut self) -> Self {
        self.outcome = Outcome::Failure;
        self
    }
}

/// An audit event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The event id.
    pub id: String,
    /// When it happened (UTC).
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor_id: Option<String>,
    /// What happened.
    pub action: String,
    /// Whom it affected.
    pub target_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// The client's address.
    pub ip: String,
    /// The client's user agent.
    pub user_agent: String,
    /// The request id.
    pub request_id: String,
    /// Small facts about the event.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only events affecting this user.
    pub target: Option<String>,
    /// Only actions among these.
    pub actions_in: Option<&'static [&'static str]>,
    /// From this time (µs, inclusive).
    pub from: Option<i64>,
    /// Until this time (µs, exclusive).
    pub to: Option<i64>,
}
