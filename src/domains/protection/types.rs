//! Rate-limit reports and bans as operators see them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    edge::policy::{Class, Mode},
    http::validate::{Kind, Text},
};

/// Why an address was banned by hand: one line with a visible character.
pub const REASON: Text = Text::new(Kind::NonBlank, 1, 200);

crate::text_schema! {
    reason_schema => REASON, false;
}

/// An IPv4 or IPv6 address.
pub fn ip_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{extensions::Extensions, ObjectBuilder, Type};
    let mut object = ObjectBuilder::new()
        .schema_type(Type::String)
        .examples(["203.0.113.7"])
        .build();
    object.extensions = Some(Extensions::from_iter([(
        "anyOf",
        serde_json::json!([{ "format": "ipv4" }, { "format": "ipv6" }]),
    )]));
    object
}

/// `GET /api/admin/rate-limits`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitReport {
    /// Where limits are kept: `memory` (this instance) or `redis` (shared).
    pub backend: &'static str,
    /// Redis failures since start (requests then fell back to per-instance limits, or were
    /// refused with 503 when failing closed).
    pub backend_errors: u64,
    /// With Redis: `closed` (in use) or `open` (it failed and no probe has had an answer since;
    /// checks fail at once and fall back). Absent on the memory backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_circuit: Option<&'static str>,
    /// Times the Redis circuit opened since start.
    pub redis_circuit_trips: u64,
    /// Requests this instance shed (503) since start, by reason.
    pub shed: ShedReport,
    /// Every policy, in header order.
    pub policies: Vec<PolicyReport>,
}

/// One policy and its counts since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyReport {
    /// The name used in the `RateLimit` headers.
    pub name: String,
    /// Its route class.
    pub class: Class,
    /// `enforce`, `shadow` or `off`.
    pub mode: Mode,
    /// Requests per window.
    pub limit: u64,
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused with 429.
    pub refused: u64,
    /// Requests shadow mode would have refused.
    pub would_refuse: u64,
    /// The keys refused (or shadow-refused) most, most first.
    pub top_keys: Vec<KeyCount>,
}

/// A key and how often it was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCount {
    /// `ip:<address>` or `user:<id>`.
    pub key: String,
    /// Refusals, real or shadow.
    pub refusals: u64,
}

/// A running ban.
#[derive(Debug, Serialize, ToSchema)]
pub struct BanView {
    /// The banned client address.
    pub ip: String,
    /// Why it was banned.
    pub reason: String,
    /// 1 for a first ban, 2 for the next within the strike memory, …
    pub level: i64,
    /// When the ban began (RFC 3339).
    pub banned_at: String,
    /// When it ends (RFC 3339).
    pub until: String,
}

/// `GET /api/admin/bans`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BanList {
    /// Every running ban, latest end first.
    pub bans: Vec<BanView>,
}

/// `POST /api/admin/bans`: ban an address by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    /// The client address (not the caller's own).
    #[schema(schema_with = ip_schema)]
    pub ip: String,
    /// Why (1 to 200 characters, one line, not blank).
    #[schema(schema_with = reason_schema)]
    pub reason: String,
}

/// Requests shed since start, by reason (`docs/edge.md`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ShedReport {
    /// `MAX_IN_FLIGHT` requests were in progress.
    pub instance_full: u64,
    /// A new request would have queued for a database connection longer than
    /// `DATABASE_QUEUE_TARGET_MS`.
    pub database_queue: u64,
    /// The database was down.
    pub database_down: u64,
}
