//! The one error type at the HTTP edge, answered as RFC 9457 `application/problem+json`.
//!
//! Domains keep their own `thiserror` enums and convert into [`AppError`]. Internal details are
//! logged with the request id and never sent to the client.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request_id::current_request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field in a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as the client named it (`email`, `profile.website`, `` for the whole body).
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl FieldError {
    /// A problem with one field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The RFC 9457 problem document every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, stable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The id of this request, for support and log search.
    pub request_id: String,
    /// Every invalid field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The members of a `/problems/plan-limit` answer: which monthly limit of the account's plan a
/// request would go over, and when it resets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanLimit {
    /// The counter that is spent (`assistant_messages`, `agent_runs`).
    pub counter: String,
    /// The plan's limit for the month.
    pub limit: i64,
    /// What the account used of it this month.
    pub used: i64,
    /// The account's plan (`free`, `pro`, `enterprise`).
    pub plan: String,
    /// When the month ends and the counter starts again from zero.
    pub resets_at: DateTime<Utc>,
    /// The page where a higher plan can be bought.
    pub upgrade_url: String,
}

/// A 429 `/problems/plan-limit` document: the problem members and the limit's.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanLimitProblem {
    /// The problem members (`type` is `/problems/plan-limit`).
    #[serde(flatten)]
    pub problem: Problem,
    /// The limit that was reached.
    #[serde(flatten)]
    pub limit: PlanLimit,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no or invalid credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such resource.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state (duplicate, stale).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413: the body is larger than this route accepts.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: the body is well-formed but invalid; every invalid field is listed.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429: slow down; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds until a retry can succeed.
        retry_after: u64,
        /// What limit was hit.
        detail: String,
    },
    /// 429 `/problems/plan-limit`: the request would go over a monthly limit of the account's
    /// plan; the body carries the limit, what was used, the plan, the reset and where to upgrade.
    #[error("plan limit reached: {} of {} {} used", .0.used, .0.limit, .0.counter)]
    PlanLimit(Box<PlanLimit>),
    /// 503: a dependency (the database, Redis) is unavailable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503: the database cannot store anything (full disk, read-only file, I/O error).
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// 503: a feature this request needs is turned off in this deployment (a payment provider
    /// without its settings); the detail, sent as is, says which.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// 500: a bug or an unexpected failure; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A 422 with a single invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } | Self::PlanLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Storage(_) | Self::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::NotConfigured(d) => d.clone(),
            Self::TooManyRequests { detail, .. } => detail.clone(),
            Self::PlanLimit(l) => format!(
                "The {} plan allows {} {} a month and {} are used; upgrade, or wait until {}.",
                l.plan,
                l.limit,
                l.counter.replace('_', " "),
                l.used,
                l.resets_at.format("%Y-%m-%d %H:%M UTC")
            ),
            Self::PayloadTooLarge => {
                "The request body is larger than this endpoint accepts.".into()
            }
            Self::UnsupportedMediaType => {
                "This endpoint accepts only `Content-Type: application/json`.".into()
            }
            Self::Validation(_) => "One or more fields are invalid; see `errors`.".into(),
            // The cause of a 503 may name hosts; it is logged, not sent.
            Self::Unavailable(_) => {
                "A service this request needs is unavailable; retry shortly.".into()
            }
            Self::Storage(_) => "The service cannot store data right now; retry shortly.".into(),
            Self::Internal(_) => {
                "An unexpected error occurred; quote the request id when reporting it.".into()
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => {
                tracing::error!(error = ?e, "request failed with an internal error")
            }
            Self::Unavailable(e) => {
                tracing::warn!(error = %e, "request failed: dependency unavailable")
            }
            Self::Storage(e) => {
                tracing::error!(error = %e, "request failed: the database cannot store data")
            }
            _ => {}
        }
        let detail = self.detail();
        if let Self::PlanLimit(limit) = self {
            return plan_limit_response(*limit, detail);
        }
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } => Some(*retry_after),
            Self::Unavailable(_) | Self::Storage(_) => Some(5),
            _ => None,
        };
        let storage_fault = matches!(self, Self::Storage(_));
        let errors = match self {
            Self::Validation(errors) => Some(errors),
            _ => None,
        };
        let mut response = problem_response(status, detail, errors);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if storage_fault {
            // Read by the HTTP layer, which tells health that writes are failing.
            response.extensions_mut().insert(crate::db::StorageFault);
        }
        response
    }
}

/// The 429 of a plan limit: its own problem type and members, and `Retry-After` until the reset.
fn plan_limit_response(limit: PlanLimit, detail: String) -> Response {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let retry_after = (limit.resets_at - Utc::now()).num_seconds().max(1);
    let body = PlanLimitProblem {
        problem: Problem {
            kind: "/problems/plan-limit".into(),
            title: "Plan Limit Reached".into(),
            status: status.as_u16(),
            detail,
            request_id: current_request_id().unwrap_or_default(),
            errors: None,
        },
        limit,
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)),
            (header::RETRY_AFTER, HeaderValue::from(retry_after)),
        ],
        body,
    )
        .into_response()
}

/// A slug for the `type` URI of a status, and its title.
fn kind_of(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad-request", "Bad Request"),
        401 => ("unauthorized", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not Found"),
        405 => ("method-not-allowed", "Method Not Allowed"),
        408 => ("request-timeout", "Request Timeout"),
        409 => ("conflict", "Conflict"),
        413 => ("payload-too-large", "Payload Too Large"),
        415 => ("unsupported-media-type", "Unsupported Media Type"),
        422 => ("validation-error", "Validation Failed"),
        429 => ("too-many-requests", "Too Many Requests"),
        503 => ("service-unavailable", "Service Unavailable"),
        504 => ("gateway-timeout", "Gateway Timeout"),
        s if s >= 500 => ("internal-error", "Internal Server Error"),
        _ => ("client-error", "Client Error"),
    }
}

/// Builds a problem+json response for any status, stamped with the current request id.
pub fn problem_response(
    status: StatusCode,
    detail: impl Into<String>,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let (slug, title) = kind_of(status);
    let problem = Problem {
        kind: format!("/problems/{slug}"),
        title: title.into(),
        status: status.as_u16(),
        detail: detail.into(),
        request_id: current_request_id().unwrap_or_default(),
        errors,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

/// The default detail for a status when a layer (not a handler) produced the error.
pub fn default_detail(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "No resource exists at this path.",
        405 => "This path does not accept this method; see the `Allow` header.",
        408 => "The request took too long to arrive.",
        413 => "The request body is larger than this endpoint accepts.",
        415 => "This endpoint accepts only `Content-Type: application/json`.",
        503 => "The service is temporarily unable to answer; retry shortly.",
        504 => "The request took too long to process.",
        s if s >= 500 => "An unexpected error occurred; quote the request id when reporting it.",
        _ => "The request could not be processed.",
    }
}

/// Maps a database error to the HTTP edge: unique violations are 409, an unreachable database or
/// one that cannot store (full disk, read-only) is 503, anything else is an internal error.
pub fn classify_error(e: sqlx::Error) -> AppError {
    match &e {
        _ if crate::db::is_storage_fault(&e) => AppError::Storage(e.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            AppError::Conflict("A record with these values already exists.".into())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => AppError::Unavailable(e.to_string()),
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| crate::db::is_unavailable_code(&c)) =>
        {
            AppError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "22021" || c == "22P02") => {
            // PostgreSQL refuses a NUL character in text (22021) or an unreadable literal
            // (22P02): values a client sent, so a 400, not a 500. SQLite stores them as is.
            tracing::warn!(error = %e, "the database refused a value from the request");
            AppError::BadRequest("A value in the request cannot be stored or searched for.".into())
        }
        _ => AppError::Internal(e.into()),
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        classify_error(e)
    }
}
