//! Recurring jobs: how often, and where each period begins.

use std::fmt;

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};

use crate::db::types::{from_micros, to_micros};

/// How often a scheduled job runs. Periods are aligned (to the Unix epoch, or to a time of day
/// in UTC), so every instance agrees on where one begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Every `n` seconds (at least 1), at multiples of `n` since the epoch.
    Seconds(u64),
    /// Once a day at `hour:minute` UTC.
    DailyAt {
        /// 0 to 23.
        hour: u32,
        /// 0 to 59.
        minute: u32,
    },
}

impl Every {
    /// The first period start strictly after `now` (Unix microseconds).
    pub fn next_after(self, now: i64) -> i64 {
        match self {
            Self::Seconds(n) => {
                let step = i64::try_from(n.max(1))
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000_000);
                now.div_euclid(step).saturating_add(1).saturating_mul(step)
            }
            Self::DailyAt { hour, minute } => {
                let at = NaiveTime::from_hms_opt(hour.min(23), minute.min(59), 0)
                    .expect("a valid time of day");
                let now = from_micros(now);
                let today = Utc.from_utc_datetime(&now.date_naive().and_time(at));
                let next = if today > now {
                    today
                } else {
                    today + Days::new(1)
                };
                to_micros(next)
            }
        }
    }
}

impl fmt::Display for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seconds(n) => write!(f, "every {n}s"),
            Self::DailyAt { hour, minute } => write!(f, "daily at {hour:02}:{minute:02} UTC"),
        }
    }
}

/// A job queued once per period by whichever instance claims the period first.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// A stable name (`jobs.prune`): the key of its row in `job_schedules`.
    pub name: String,
    /// How often.
    pub every: Every,
    /// The kind of job to queue.
    pub kind: String,
    /// The payload of each job.
    pub payload: serde_json::Value,
}

impl Schedule {
    /// The idempotency key of the job of the period that began at `period_start` (microseconds).
    pub fn period_key(&self, period_start: i64) -> String {
        format!("schedule:{}:{period_start}", self.name)
    }
}

/// When a stored period start is, for display.
pub(super) fn at(micros: Option<i64>) -> Option<DateTime<Utc>> {
    micros.map(from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        to_micros(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn second_periods_are_aligned_to_the_epoch_and_strictly_later() {
        let every = Every::Seconds(10);
        assert_eq!(
            every.next_after(micros("2026-01-01T00:00:03Z")),
            micros("2026-01-01T00:00:10Z")
        );
        assert_eq!(
            every.next_after(micros("2026-01-01T00:00:10Z")),
            micros("2026-01-01T00:00:20Z")
        );
        assert_eq!(
            Every::Seconds(0).next_after(0),
            1_000_000,
            "at least one second"
        );
    }

    #[test]
    fn daily_periods_start_at_the_time_of_day_in_utc() {
        let every = Every::DailyAt {
            hour: 3,
            minute: 30,
        };
        assert_eq!(
            every.next_after(micros("2026-01-01T01:00:00Z")),
            micros("2026-01-01T03:30:00Z")
        );
        assert_eq!(
            every.next_after(micros("2026-01-01T03:30:00Z")),
            micros("2026-01-02T03:30:00Z")
        );
        assert_eq!(every.to_string(), "daily at 03:30 UTC");
        assert_eq!(Every::Seconds(5).to_string(), "every 5s");
    }
}
