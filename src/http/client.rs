//! The client's address as the service sees it.

use std::net::{IpAddr, SocketAddr};

use axum::{extract::FromRequestParts, http::request::Parts};

/// The address of the peer, taken from the socket.
///
/// Until trusted proxies are configured this is the TCP peer; a client can never choose it by
/// sending a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// Reads the peer address recorded by the server (`ConnectInfo`), if any.
    pub fn from_parts(parts: &Parts) -> Option<Self> {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|ci| Self(ci.0.ip()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts).unwrap_or(Self(IpAddr::from([0, 0, 0, 0]))))
    }
}
