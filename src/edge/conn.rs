//! In-flight request caps: per client address, and for the whole instance (load shedding).

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use dashmap::DashMap;

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The instance is saturated: shed with 503.
    Instance,
    /// This client already has its share in flight: 429.
    Client,
}

/// The counters behind [`InFlight`] permits.
#[derive(Debug)]
pub struct ConnGuard {
    in_flight: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    max_in_flight: usize,
    max_per_ip: usize,
}

/// A request being served; dropping it frees its place.
#[derive(Debug)]
pub struct InFlight {
    guard: Arc<ConnGuard>,
    ip: IpAddr,
}

impl ConnGuard {
    /// Caps of `max_in_flight` requests in all and `max_per_ip` per client.
    pub fn new(max_in_flight: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            max_in_flight,
            max_per_ip,
        })
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The instance's cap, `MAX_IN_FLIGHT`.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Lets a request of `ip` in while fewer than `limit` (at most `MAX_IN_FLIGHT`) are in
    /// flight, or says which cap is full. Never waits.
    pub fn enter(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Result<InFlight, Full> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= limit.min(self.max_in_flight) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Instance);
        }
        let mut count = self.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            drop(count);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Client);
        }
        *count += 1;
        Ok(InFlight {
            guard: self.clone(),
            ip,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.guard.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
        self.guard.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
