//! The edge variables: trusted proxies, rate-limit policies, abuse bans, connection limits.

use std::time::Duration;

use ipnet::IpNet;

use crate::config::reader::Reader;

use super::policy::{Class, Mode, Policy, Quota};

/// Which forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHeader {
    /// `X-Forwarded-For` (Heroku, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    Forwarded,
}

/// Abuse scoring and temporary bans.
#[derive(Debug, Clone)]
pub struct AbuseSettings {
    /// `ABUSE_BAN_THRESHOLD`: points that trigger a ban; 0 turns bans off.
    pub threshold: u32,
    /// `ABUSE_BAN_DURATIONS`: ban lengths for the 1st, 2nd, … ban (the last repeats).
    pub durations: Vec<Duration>,
    /// `ABUSE_SCORE_WINDOW_SECONDS`: how long points count.
    pub window: Duration,
    /// `ABUSE_STRIKE_MEMORY_SECONDS`: how long a past ban makes the next one longer.
    pub strike_memory: Duration,
    /// `BAN_SYNC_SECONDS`: how often each instance reloads the shared ban list.
    pub sync_every: Duration,
}

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// `HEADER_READ_TIMEOUT_SECONDS`: slow-loris protection.
    pub header_read_timeout: Duration,
    /// `MAX_HEADER_BYTES`: the largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// `MAX_CONCURRENT_PER_IP`: requests one client may have in flight (429 beyond).
    pub max_concurrent_per_ip: usize,
    /// `MAX_IN_FLIGHT`: requests the instance serves at once before shedding (503).
    pub max_in_flight: usize,
    /// `MAX_CONNECTIONS_PER_IP`: open connections one peer address (an IPv6 peer's /64) may
    /// hold; beyond it a connection gets a 503 and is closed. Trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// `DATABASE_QUEUE_TARGET_MS`: while a request arriving now would wait longer than this for
    /// a database connection, requests are shed (503) instead of queued; `None` (0) turns it off.
    pub db_queue_target: Option<Duration>,
}

/// Everything the edge protection reads from the environment.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// `TRUSTED_PROXIES`: CIDRs whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `TRUSTED_PROXY_HEADER`.
    pub forward_header: ForwardHeader,
    /// Every rate-limit policy (one per class quota).
    pub policies: Vec<Policy>,
    /// `RATE_LIMIT_FAIL_MODE=closed`: answer 503 when Redis is unreachable.
    pub fail_closed: bool,
    /// `REDIS_KEY_PREFIX`: namespace of every key this service writes to Redis.
    pub redis_prefix: String,
    /// `RATE_LIMIT_REDIS_TIMEOUT_MS`: the longest a limit check waits for Redis.
    pub redis_timeout: Duration,
    /// Abuse scoring and bans.
    pub abuse: AbuseSettings,
    /// Connection-level limits.
    pub conn: ConnLimits,
}

impl EdgeSettings {
    /// Whether any policy is enforced or shadowed.
    pub fn rate_limiting(&self) -> bool {
        self.policies.iter().any(|p| p.mode != Mode::Off)
    }

    /// The effective values as `(variable, value)` pairs.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let nets: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut out = vec![("TRUSTED_PROXIES", nets.join(","))];
        for class in Class::ALL {
            let quotas: Vec<String> = self
                .policies
                .iter()
                .filter(|p| p.class == class)
                .map(|p| format!("{}/{} ({})", p.quota.limit, p.quota.window_secs, p.mode))
                .collect();
            out.push((class.var(), quotas.join(",")));
        }
        out.extend([
            (
                "RATE_LIMIT_FAIL_MODE",
                if self.fail_closed { "closed" } else { "open" }.into(),
            ),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("ABUSE_BAN_THRESHOLD", self.abuse.threshold.to_string()),
            (
                "MAX_CONCURRENT_PER_IP",
                self.conn.max_concurrent_per_ip.to_string(),
            ),
            (
                "MAX_CONNECTIONS_PER_IP",
                self.conn.max_connections_per_ip.to_string(),
            ),
            ("MAX_IN_FLIGHT", self.conn.max_in_flight.to_string()),
            (
                "DATABASE_QUEUE_TARGET_MS",
                self.conn
                    .db_queue_target
                    .map_or(0, |t| t.as_millis())
                    .to_string(),
            ),
            ("MAX_HEADER_BYTES", self.conn.max_header_bytes.to_string()),
        ]);
        out
    }
}

/// Reads every edge variable, recording problems in `r`.
pub(crate) fn read(r: &mut Reader<'_>) -> EdgeSettings {
    let trusted_proxies = trusted_proxies(r);
    let forward_header = match r
        .raw("TRUSTED_PROXY_HEADER")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => ForwardHeader::XForwardedFor,
        Some(v) if v == "x-forwarded-for" => ForwardHeader::XForwardedFor,
        Some(v) if v == "forwarded" => ForwardHeader::Forwarded,
        Some(v) => {
            r.problem(
                "TRUSTED_PROXY_HEADER",
                format!("`{v}` is not x-forwarded-for or forwarded"),
                "x-forwarded-for",
            );
            ForwardHeader::XForwardedFor
        }
    };
    let all_mode = mode(r, "RATE_LIMIT_MODE", Mode::Enforce);
    let mut policies = Vec::new();
    for class in Class::ALL {
        let class_mode = mode(r, class.mode_var(), all_mode);
        for quota in quotas(r, class) {
            policies.push(Policy::new(class, quota, class_mode));
        }
    }
    Policy::name_all(&mut policies);
    // One IPv6 allocation (a /48) holds 65,536 /64s: without an aggregate it could multiply the
    // per-client budget that many times.
    let general_mode = mode(r, Class::General.mode_var(), all_mode);
    let default_48 = Quota {
        limit: 8 * Class::General.default_quotas()[0].limit,
        window_secs: Class::General.default_quotas()[0].window_secs,
    };
    let quota_48 = match r.raw("RATE_LIMIT_IPV6_48") {
        None => default_48,
        Some(raw) => Quota::parse(raw.trim()).unwrap_or_else(|| {
            r.problem(
                "RATE_LIMIT_IPV6_48",
                format!("`{raw}` is not N/SECONDS with N and SECONDS above zero"),
                "4800/60",
            );
            default_48
        }),
    };
    policies.push(Policy::ipv6_48(quota_48, general_mode));
    let fail_closed = match r
        .raw("RATE_LIMIT_FAIL_MODE")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => false,
        Some(v) if v == "open" => false,
        Some(v) if v == "closed" => true,
        Some(v) => {
            r.problem(
                "RATE_LIMIT_FAIL_MODE",
                format!("`{v}` is not open or closed"),
                "open",
            );
            false
        }
    };
    EdgeSettings {
        trusted_proxies,
        forward_header,
        policies,
        fail_closed,
        redis_prefix: r
            .raw("REDIS_KEY_PREFIX")
            .unwrap_or_else(|| "autorisen:".into()),
        redis_timeout: Duration::from_millis(
            r.parsed("RATE_LIMIT_REDIS_TIMEOUT_MS", 250u64, "milliseconds", "250")
                .max(1),
        ),
        abuse: abuse(r),
        conn: conn(r),
    }
}

fn trusted_proxies(r: &mut Reader<'_>) -> Vec<IpNet> {
    const EXAMPLE: &str = "10.0.0.0/8,192.168.1.7";
    let Some(raw) = r.raw("TRUSTED_PROXIES") else {
        return Vec::new();
    };
    let mut nets = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            // Trusting every address lets any client write its own address in the header, and
            // so pick its rate-limit key and dodge bans.
            Ok(net) if net.prefix_len() == 0 => r.problem(
                "TRUSTED_PROXIES",
                format!("`{item}` trusts every address: name the proxies' own networks"),
                EXAMPLE,
            ),
            Ok(net) => nets.push(net.trunc()),
            Err(_) => r.problem(
                "TRUSTED_PROXIES",
                format!("`{item}` is not a CIDR or an IP address"),
                EXAMPLE,
            ),
        }
    }
    nets
}

fn mode(r: &mut Reader<'_>, var: &'static str, default: Mode) -> Mode {
    match r.raw(var) {
        None => default,
        Some(v) => Mode::parse(&v).unwrap_or_else(|| {
            r.problem(
                var,
                format!("`{v}` is not enforce, shadow or off"),
                "shadow",
            );
            default
        }),
    }
}

/// `N/SECONDS[,N/SECONDS…]`.
fn quotas(r: &mut Reader<'_>, class: Class) -> Vec<Quota> {
    let Some(raw) = r.raw(class.var()) else {
        return class.default_quotas();
    };
    let parsed: Option<Vec<Quota>> = raw.split(',').map(|q| Quota::parse(q.trim())).collect();
    match parsed {
        Some(q) if !q.is_empty() => q,
        _ => {
            r.problem(
                class.var(),
                format!("`{raw}` is not N/SECONDS[,N/SECONDS] with N and SECONDS above zero"),
                "600/60",
            );
            class.default_quotas()
        }
    }
}

fn abuse(r: &mut Reader<'_>) -> AbuseSettings {
    const DURATIONS: &str = "60,600,3600,86400";
    let durations = r
        .raw("ABUSE_BAN_DURATIONS")
        .unwrap_or_else(|| DURATIONS.into());
    let durations: Option<Vec<Duration>> = durations
        .split(',')
        .map(|d| {
            d.trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
        })
        .collect();
    let durations = durations.filter(|d| !d.is_empty()).unwrap_or_else(|| {
        r.problem(
            "ABUSE_BAN_DURATIONS",
            "is not a list of seconds above zero",
            DURATIONS,
        );
        vec![Duration::from_secs(60)]
    });
    AbuseSettings {
        threshold: r.parsed("ABUSE_BAN_THRESHOLD", 20u32, "a whole number", "20"),
        durations,
        window: r.positive_seconds("ABUSE_SCORE_WINDOW_SECONDS", 600, "600"),
        strike_memory: r.positive_seconds("ABUSE_STRIKE_MEMORY_SECONDS", 86_400, "86400"),
        sync_every: r.positive_seconds("BAN_SYNC_SECONDS", 2, "2"),
    }
}

fn conn(r: &mut Reader<'_>) -> ConnLimits {
    let max_header_bytes = r.parsed("MAX_HEADER_BYTES", 16_384usize, "a size in bytes", "16384");
    if max_header_bytes < 8192 {
        r.problem(
            "MAX_HEADER_BYTES",
            "must be at least 8192 (the HTTP/1 read buffer's minimum)",
            "16384",
        );
    }
    let per_ip = r.parsed("MAX_CONCURRENT_PER_IP", 64usize, "a whole number", "64");
    let in_flight = r.parsed("MAX_IN_FLIGHT", 1024usize, "a whole number", "1024");
    let connections = r.parsed("MAX_CONNECTIONS_PER_IP", 256usize, "a whole number", "256");
    let queue_ms = r.parsed(
        "DATABASE_QUEUE_TARGET_MS",
        100u64,
        "a whole number of milliseconds (0 turns it off)",
        "100",
    );
    for (var, v) in [
        ("MAX_CONCURRENT_PER_IP", per_ip),
        ("MAX_IN_FLIGHT", in_flight),
        ("MAX_CONNECTIONS_PER_IP", connections),
    ] {
        if v == 0 {
            r.problem(var, "must be at least 1", "64");
        }
    }
    ConnLimits {
        header_read_timeout: r.positive_seconds("HEADER_READ_TIMEOUT_SECONDS", 10, "10"),
        max_header_bytes: max_header_bytes.max(8192),
        max_concurrent_per_ip: per_ip.max(1),
        max_in_flight: in_flight.max(1),
        max_connections_per_ip: connections.max(1),
        db_queue_target: (queue_ms > 0).then(|| Duration::from_millis(queue_ms)),
    }
}
