//! Billing's calendar is South Africa's: a customer who pays at 01:00 on 1 March in
//! Johannesburg (23:00 UTC on 28 February) renews on 1 April, invoice years and quota months
//! begin at midnight there. Africa/Johannesburg is UTC+02:00 all year (no daylight saving since
//! 1944), so a fixed offset is exact.

use chrono::{DateTime, Datelike, FixedOffset, Months, TimeZone, Utc};

use crate::db::types::{from_micros, to_micros};

/// South African Standard Time.
pub fn zone() -> FixedOffset {
    FixedOffset::east_opt(2 * 3600).expect("+02:00 is a valid offset")
}

/// `micros` plus `months` calendar months in Johannesburg (the 31st becomes the last day of a
/// shorter month); `None` beyond the calendar.
pub fn add_months(micros: i64, months: u32) -> Option<i64> {
    from_micros(micros)
        .with_timezone(&zone())
        .checked_add_months(Months::new(months))
        .map(|t| to_micros(t.with_timezone(&Utc)))
}

/// The year in Johannesburg at `micros` (invoice numbers run per year).
pub fn year_of(micros: i64) -> i32 {
    from_micros(micros).with_timezone(&zone()).year()
}

/// The month in Johannesburg holding `micros`: its first midnight and the next month's.
pub fn month_of(micros: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = from_micros(micros).with_timezone(&zone());
    let start = zone()
        .with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(local);
    let next = start.checked_add_months(Months::new(1)).unwrap_or(start);
    (start.with_timezone(&Utc), next.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        to_micros(s.parse::<DateTime<Utc>>().unwrap())
    }

    fn text(micros: i64) -> String {
        from_micros(micros).to_rfc3339()
    }

    #[test]
    fn months_are_added_on_johannesburgs_calendar() {
        // 01:00 on 1 March in Johannesburg renews on 1 April, not on 28 March (UTC's date).
        assert_eq!(
            text(add_months(at("2027-02-28T23:00:00Z"), 1).unwrap()),
            "2027-03-31T23:00:00+00:00"
        );
        // The 31st becomes the last day of February, and the anchor's 31st comes back.
        assert_eq!(
            text(add_months(at("2027-01-31T21:30:00Z"), 1).unwrap()),
            "2027-02-28T21:30:00+00:00"
        );
        assert_eq!(
            text(add_months(at("2027-01-31T21:30:00Z"), 2).unwrap()),
            "2027-03-31T21:30:00+00:00"
        );
        assert_eq!(
            text(add_months(at("2028-01-31T10:00:00Z"), 1).unwrap()),
            "2028-02-29T10:00:00+00:00"
        );
    }

    #[test]
    fn the_year_and_the_month_turn_at_midnight_in_johannesburg() {
        assert_eq!(year_of(at("2027-12-31T21:59:59Z")), 2027);
        assert_eq!(year_of(at("2027-12-31T22:00:00Z")), 2028);
        let (start, next) = month_of(at("2027-03-31T22:30:00Z"));
        assert_eq!(start.to_rfc3339(), "2027-03-31T22:00:00+00:00");
        assert_eq!(next.to_rfc3339(), "2027-04-30T22:00:00+00:00");
        let (start, _) = month_of(at("2027-03-31T21:59:59Z"));
        assert_eq!(start.to_rfc3339(), "2027-02-28T22:00:00+00:00");
    }
}
