//! The request id: accepted from a sane inbound `X-Request-Id`, else generated.
//!
//! It is kept in a task-local for the life of the request, so that error bodies built deep in a
//! handler (or a layer) can carry it without threading it through every call.

use axum::http::HeaderMap;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The header that carries the request id both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Runs `f` with `id` as the current request id (the synchronous part of a request).
pub fn sync_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

/// The inbound id if it is sane (1 to 128 characters of `[A-Za-z0-9._:-]`), else a new UUIDv7.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map(str::to_owned)
        .unwrap_or_else(new_id)
}

/// A new UUIDv7 in its hyphenated lower-case form, written directly rather than through
/// `Display` (which costs several times as much).
fn new_id() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbound_id_with_log_injection_characters_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "abc\" level=error".parse().unwrap());
        let id = from_headers(&h);
        assert_ne!(id, "abc\" level=error");
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn a_sane_inbound_id_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "heroku-req:1234-abcd".parse().unwrap());
        assert_eq!(from_headers(&h), "heroku-req:1234-abcd");
    }
}
