//! The health domain's settings: how long a dependency check is reused.

use std::{sync::Arc, time::Duration};

use crate::config::{Core, DomainSettings, Reader};

/// `HEALTH_CACHE_MS`.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// How long one database and Redis check answers `/api/health` and `/ready` (default 1000
    /// ms; 0 checks on every call). Probes are exempt from the edge, so without it a flood of
    /// them would be a flood of database round trips.
    pub cache: Duration,
}

impl DomainSettings for HealthSettings {
    fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![("HEALTH_CACHE_MS", self.cache.as_millis().to_string())]
    }
}

/// Reads the health settings (the health domain's settings reader).
pub fn read(r: &mut Reader<'_>, _core: &Core) -> Arc<dyn DomainSettings> {
    let ms = r.parsed(
        "HEALTH_CACHE_MS",
        1000u64,
        "a whole number of milliseconds",
        "1000",
    );
    if ms > 60_000 {
        r.problem(
            "HEALTH_CACHE_MS",
            "must be at most 60000: a health check older than a minute says little",
            "1000",
        );
    }
    Arc::new(HealthSettings {
        cache: Duration::from_millis(ms.min(60_000)),
    })
}
