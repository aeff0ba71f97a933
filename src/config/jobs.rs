//! `JOBS_*`: how the job runner of each instance paces itself.

use std::time::Duration;

use super::reader::Reader;

/// Every `JOBS_*` setting.
#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// `JOBS_CONCURRENCY`: jobs one instance runs at once.
    pub concurrency: usize,
    /// `JOBS_LEASE_SECONDS`: how long a claim holds without a heartbeat.
    pub lease: Duration,
    /// `JOBS_POLL_INTERVAL_MS`: how often the runner looks for due jobs when not woken.
    pub poll_interval: Duration,
}

impl JobsSettings {
    /// The settings as `(variable, value)` pairs (none is secret).
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![
            ("JOBS_CONCURRENCY", self.concurrency.to_string()),
            ("JOBS_LEASE_SECONDS", self.lease.as_secs().to_string()),
            (
                "JOBS_POLL_INTERVAL_MS",
                self.poll_interval.as_millis().to_string(),
            ),
        ]
    }
}

/// The most jobs one instance may run at once: each may hold a database connection.
const MAX_CONCURRENCY: usize = 256;

/// Reads and validates every `JOBS_*` variable, recording each problem in `r`. When
/// `JOBS_POLL_INTERVAL_MS` is unset, `MAIL_POLL_INTERVAL_MS` (from before the runner existed) is
/// the poll interval if set.
pub(super) fn read(r: &mut Reader<'_>, mail_poll: Option<Duration>) -> JobsSettings {
    let concurrency = r.parsed("JOBS_CONCURRENCY", 4usize, "a whole number", "4");
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        r.problem("JOBS_CONCURRENCY", "must be between 1 and 256", "4");
    }
    let lease = r.positive_seconds("JOBS_LEASE_SECONDS", 60, "60");
    let poll_ms = r.parsed(
        "JOBS_POLL_INTERVAL_MS",
        1000u64,
        "a number of milliseconds",
        "1000",
    );
    if poll_ms == 0 {
        r.problem("JOBS_POLL_INTERVAL_MS", "must be greater than zero", "1000");
    }
    let poll_interval = match (r.raw("JOBS_POLL_INTERVAL_MS"), mail_poll) {
        (None, Some(mail)) => mail,
        _ => Duration::from_millis(poll_ms.max(1)),
    };
    JobsSettings {
        concurrency: concurrency.clamp(1, MAX_CONCURRENCY),
        lease,
        poll_interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(
        vars: &[(&str, &str)],
        mail_poll: Option<Duration>,
    ) -> (JobsSettings, Vec<String>) {
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut r = Reader::new(&lookup);
        let s = read(&mut r, mail_poll);
        (
            s,
            r.into_problems()
                .into_iter()
                .map(|p| p.var.to_owned())
                .collect(),
        )
    }

    #[test]
    fn defaults_are_four_jobs_a_minute_lease_and_a_one_second_poll() {
        let (s, problems) = read_with(&[], None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.lease, Duration::from_secs(60));
        assert_eq!(s.poll_interval, Duration::from_millis(1000));
    }

    #[test]
    fn every_bad_value_is_reported() {
        let (_, problems) = read_with(
            &[
                ("JOBS_CONCURRENCY", "0"),
                ("JOBS_LEASE_SECONDS", "soon"),
                ("JOBS_POLL_INTERVAL_MS", "0"),
            ],
            None,
        );
        assert_eq!(
            problems,
            [
                "JOBS_CONCURRENCY",
                "JOBS_LEASE_SECONDS",
                "JOBS_POLL_INTERVAL_MS"
            ]
        );
    }

    #[test]
    fn the_mail_poll_interval_is_the_fallback_and_jobs_poll_interval_wins() {
        let mail = Some(Duration::from_millis(50));
        let (s, _) = read_with(&[], mail);
        assert_eq!(s.poll_interval, Duration::from_millis(50));
        let (s, _) = read_with(&[("JOBS_POLL_INTERVAL_MS", "200")], mail);
        assert_eq!(s.poll_interval, Duration::from_millis(200));
    }
}
