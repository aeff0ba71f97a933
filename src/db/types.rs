//! Portable representations: UUID text ids and Unix-microsecond UTC timestamps.

use chrono::{DateTime, TimeZone, Utc};

/// A new time-ordered id (UUIDv7) as stored in the database.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time as stored in the database.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A stored timestamp as a UTC date-time.
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

/// A UTC date-time as stored in the database.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let now = now_micros();
        assert_eq!(to_micros(from_micros(now)), now);
    }
}
