//! Abuse scoring: offences add points to a client's score; past the threshold it is banned.

use std::{net::IpAddr, time::Instant};

use dashmap::DashMap;

use super::settings::AbuseSettings;

/// Points for one refusal with 429.
pub const RATE_LIMITED_POINTS: u32 = 1;
/// Points for asking for a scanner's path (`/.env`, `/wp-admin`, …).
pub const PROBE_POINTS: u32 = 5;

/// Scores per client address, each counted over its own window.
#[derive(Debug)]
pub struct Abuse {
    scores: DashMap<IpAddr, (u32, Instant)>,
    settings: AbuseSettings,
}

impl Abuse {
    /// Empty scores.
    pub fn new(settings: AbuseSettings) -> Self {
        Self {
            scores: DashMap::new(),
            settings,
        }
    }

    /// Whether scoring (and so banning) is on.
    pub fn enabled(&self) -> bool {
        self.settings.threshold > 0
    }

    /// Adds `points` to `ip`'s score; true when it reaches the threshold (the score restarts).
    pub fn add(&self, ip: IpAddr, points: u32) -> bool {
        if !self.enabled() {
            return false;
        }
        let now = Instant::now();
        let mut entry = self.scores.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) > self.settings.window {
            *entry = (0, now);
        }
        entry.0 += points;
        if entry.0 >= self.settings.threshold {
            *entry = (0, now);
            return true;
        }
        false
    }

    /// Forgets scores whose window has passed.
    pub fn sweep(&self) {
        let window = self.settings.window;
        self.scores
            .retain(|_, (_, since)| since.elapsed() <= window);
    }
}
