//! The registry: every domain, in one list. Each folder brings its routes, settings, route
//! classes and features through its `DOMAIN` entry (see [`crate::domain::Domain`]).

pub mod admin;
pub mod assistant;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod health;
pub mod ops;
pub mod protection;
pub mod users;

use crate::{config::SettingsReader, domain::Domain};

/// Every domain the application is assembled from, in route-merging order.
pub const DOMAINS: &[Domain] = &[
    health::DOMAIN,
    protection::DOMAIN,
    users::DOMAIN,
    audit::DOMAIN,
    auth::DOMAIN,
    admin::DOMAIN,
    ops::DOMAIN,
    billing::DOMAIN,
    assistant::DOMAIN,
];

/// The settings readers of every domain, for [`crate::config::Config::from_lookup`].
pub fn settings() -> Vec<SettingsReader> {
    DOMAINS.iter().filter_map(|d| d.settings).collect()
}
