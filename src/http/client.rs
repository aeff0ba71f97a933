//! The client's address as the service sees it, through trusted proxies only.
//!
//! With no `TRUSTED_PROXIES`, the client is the TCP peer and forwarding headers are ignored, so
//! a client can never choose its own rate-limit key. When the peer is a trusted proxy, the
//! forwarding header it writes is read from the right: the right-most address that is not a
//! trusted proxy is the client (addresses to its left were written by the client itself).

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, HeaderMap},
};
use ipnet::IpNet;

use crate::edge::settings::ForwardHeader;

/// The resolved client address, put in the request's extensions by the outermost middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardHeader,
}

impl TrustedProxies {
    /// Proxies in `nets`, which write `header`.
    pub fn new(nets: Vec<IpNet>, header: ForwardHeader) -> Self {
        Self { nets, header }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let name = match self.header {
            ForwardHeader::XForwardedFor => "x-forwarded-for",
            ForwardHeader::Forwarded => "forwarded",
        };
        // Several header lines form one list, in order.
        let hops: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let parsed = match self.header {
                ForwardHeader::XForwardedFor => parse_hop(hop),
                ForwardHeader::Forwarded => forwarded_for(hop).and_then(parse_hop),
            };
            // An unreadable hop ends the trust chain: the last trusted hop is all we know.
            let Some(ip) = parsed else { break };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .and_then(|h| h.parse().ok())
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

impl ClientAddr {
    /// The resolved address, else the socket peer, if any.
    pub fn from_parts(parts: &Parts) -> Option<Self> {
        parts.extensions.get::<ClientAddr>().copied().or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| Self(canonical(ci.0.ip())))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts).unwrap_or(Self(IpAddr::from([0, 0, 0, 0]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn proxies(nets: &str, header: ForwardHeader) -> TrustedProxies {
        TrustedProxies::new(
            nets.split(',').map(|n| n.parse().unwrap()).collect(),
            header,
        )
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies("10.0.0.0/8", ForwardHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["6.6.6.6, 1.2.3.4", "10.0.0.5"]);
        assert_eq!(
            p.resolve("10.0.0.9".parse().unwrap(), &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let p = proxies("10.0.0.0/8", ForwardHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(
            p.resolve("8.8.8.8".parse().unwrap(), &h),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_elements_with_ports_and_brackets_are_read() {
        let p = proxies("10.0.0.0/8", ForwardHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[r#"for=9.9.9.9, for="[2001:db8::7]:4711";proto=https"#],
        );
        assert_eq!(
            p.resolve("10.1.1.1".parse().unwrap(), &h),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_last_trusted_proxy() {
        let p = proxies("10.0.0.0/8", ForwardHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["1.2.3.4, unknown, 10.0.0.3"]);
        assert_eq!(
            p.resolve("10.0.0.9".parse().unwrap(), &h),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
    }
}
