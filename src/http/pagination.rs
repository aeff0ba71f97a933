//! `?page=&per_page=` and the page envelope every list answers with.

use serde::{
    de::{self, Visitor},
    Deserialize, Deserializer, Serialize,
};
use utoipa::{IntoParams, ToSchema};

/// The largest page a client may ask for.
pub const MAX_PER_PAGE: u32 = 100;

/// Which page of a list to return (1-based; default 20 items, at most 100). Out-of-range values
/// are refused (422), never clamped.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Pagination {
    /// The page number, from 1.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64)]
    pub page: Option<PageNumber>,
    /// Items per page, 1 to 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<PerPage>,
}

/// A page number, 1 to `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageNumber(pub u32);

/// A page size, 1 to [`MAX_PER_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerPage(pub u32);

/// Reads a whole number from a query string (text) or JSON (a number), within `min..=max`.
fn bounded<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u32, D::Error> {
    struct Bounded(u64, u64);
    impl Visitor<'_> for Bounded {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a whole number from {} to {}", self.0, self.1)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            if (self.0..=self.1).contains(&v) {
                u32::try_from(v)
                    .map_err(|_| E::custom(format!("must be between {} and {}", self.0, self.1)))
            } else {
                Err(E::custom(format!(
                    "must be between {} and {}",
                    self.0, self.1
                )))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "must be between {} and {}",
                    self.0, self.1
                ))),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            // Digits only: no sign, no spaces, no decimal point.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!(
                    "must be a whole number from {} to {}",
                    self.0, self.1
                )));
            }
            match v.parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "must be between {} and {}",
                    self.0, self.1
                ))),
            }
        }
    }
    d.deserialize_any(Bounded(min, max))
}

impl<'de> Deserialize<'de> for PageNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, 1, u64::from(u32::MAX)).map(Self)
    }
}

impl<'de> Deserialize<'de> for PerPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, 1, u64::from(MAX_PER_PAGE)).map(Self)
    }
}

impl Pagination {
    /// The page number (at least 1).
    pub fn page(&self) -> u32 {
        self.page.map_or(1, |p| p.0)
    }

    /// Items per page (default 20).
    pub fn per_page(&self) -> u32 {
        self.per_page.map_or(20, |p| p.0)
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
