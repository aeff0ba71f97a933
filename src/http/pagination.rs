//! `?page=&per_page=` and the page envelope every list answers with.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The largest page a client may ask for.
pub const MAX_PER_PAGE: u32 = 100;

/// Which page of a list to return (1-based; default 20 items, at most 100).
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Pagination {
    /// The page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1 to 100.
    pub per_page: Option<u32>,
}

impl Pagination {
    /// The page number (at least 1).
    pub fn page(&self) -> u32 {
        self.page.unwrap_or(1).max(1)
    }

    /// Items per page, clamped to 1..=100.
    pub fn per_page(&self) -> u32 {
        self.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE)
    }

    /// The SQL `LIMIT`.
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page())
    }

    /// The SQL `OFFSET`.
    pub fn offset(&self) -> i64 {
        i64::from(self.page() - 1).saturating_mul(self.limit())
    }

    /// Wraps one page of `items` out of `total`.
    pub fn wrap<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page(),
            per_page: self.per_page(),
            total: total.max(0) as u64,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// This page's number.
    pub page: u32,
    /// Items per page.
    pub per_page: u32,
    /// Items in the whole list.
    pub total: u64,
}
