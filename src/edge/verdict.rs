//! What the limiter decides about: whose budget ([`LimitKey`]) and the decisions for one request
//! ([`Verdict`]).

use std::{fmt, net::IpAddr};

use super::{
    gcra::Decision,
    policy::{Mode, Policy},
};

/// Whom a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A client address (IPv6 clients are keyed by their /64, which one client usually owns).
    Ip(IpAddr),
    /// A user id.
    User(Box<str>),
    /// A target account of a credential route, as a digest of its normalised email (so no
    /// address lands in Redis keys or the admin report).
    Account(Box<str>),
}

/// The network one client controls: an IPv4 address itself, an IPv6 address's /64 (one
/// subscriber usually holds a whole /64, so per-address keys would be trivial to rotate). Limits,
/// bans, abuse scores and in-flight caps all key on it.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

impl LimitKey {
    /// The key of a client address.
    pub fn ip(ip: IpAddr) -> Self {
        Self::Ip(client_network(ip))
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Account(digest) => write!(f, "account:{digest}"),
        }
    }
}

/// The decisions for one request, one per policy checked.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `(policy index, decision)`.
    pub decisions: Vec<(usize, Decision)>,
    /// True when an enforced policy refused the request.
    pub refused: bool,
    /// True when Redis failed and the limiter is configured to fail closed.
    pub unavailable: bool,
}

impl Verdict {
    /// Seconds until every refusing enforced policy admits again.
    pub fn retry_after(&self, policies: &[Policy]) -> u64 {
        self.decisions
            .iter()
            .filter(|(i, d)| !d.allowed && policies[*i].mode == Mode::Enforce)
            .map(|(_, d)| d.reset_secs)
            .max()
            .unwrap_or(1)
    }
}
