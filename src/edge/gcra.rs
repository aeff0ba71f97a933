//! The generic cell rate algorithm (GCRA), the one rule both backends apply.
//!
//! A quota of `limit` per `window` refills continuously: one request every `window / limit`.
//! The only state per key is the theoretical arrival time (TAT). The Redis script
//! (`limiter_redis.rs`) is a copy in milliseconds.

/// The outcome of one request against one quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request fits the quota.
    pub allowed: bool,
    /// Requests left after this one (0 when refused).
    pub remaining: u64,
    /// Allowed: seconds until the budget is full again. Refused: seconds until one request fits.
    pub reset_secs: u64,
}

/// Decides a request arriving at `now` on a key whose state is `tat`, in any one unit of time
/// (`unit_per_sec` of them in a second). Returns the decision and the new TAT, if it changed.
pub fn decide(
    tat: u64,
    now: u64,
    interval: u64,
    window: u64,
    unit_per_sec: u64,
) -> (Decision, Option<u64>) {
    let new_tat = tat.max(now) + interval;
    let ahead = new_tat - now;
    if ahead > window {
        let wait = ahead - window;
        let decision = Decision {
            allowed: false,
            remaining: 0,
            reset_secs: ceil_div(wait, unit_per_sec).max(1),
        };
        return (decision, None);
    }
    let decision = Decision {
        allowed: true,
        remaining: (window - ahead) / interval,
        reset_secs: ceil_div(ahead, unit_per_sec),
    };
    (decision, Some(new_tat))
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn a_full_budget_admits_exactly_the_limit_then_refuses_until_one_interval_passes() {
        let (interval, window) = (6 * S, 60 * S);
        let mut tat = 0;
        for i in 0..10 {
            let (d, next) = decide(tat, 100 * S, interval, window, S);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
            tat = next.unwrap();
        }
        let (refused, next) = decide(tat, 100 * S, interval, window, S);
        assert_eq!(
            refused,
            Decision {
                allowed: false,
                remaining: 0,
                reset_secs: 6
            }
        );
        assert!(next.is_none());
        assert!(decide(tat, 106 * S, interval, window, S).0.allowed);
    }
}
