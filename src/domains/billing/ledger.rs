//! The double-entry ledger: every money movement is one transaction whose entries sum to zero
//! across accounts. Balances are read from it, never kept beside it.
//!
//! Signs: money the platform holds or is owed is positive (`provider_clearing`, and
//! `promotional_credits` as the cost of bonus credit, `refunds` as plan money paid back); what it owes or has earned is negative
//! (`customer_credits`, `platform_revenue`). A customer's credit balance is the negated sum of
//! their `customer_credits` entries.

use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::types::new_id;

/// Money the provider collected for us and has not paid out yet.
pub const PROVIDER_CLEARING: &str = "provider_clearing";
/// Earned subscription revenue.
pub const PLATFORM_REVENUE: &str = "platform_revenue";
/// Credit the platform owes a customer (per user).
pub const CUSTOMER_CREDITS: &str = "customer_credits";
/// Bonus credit given beyond what was paid (a cost to the platform).
pub const PROMOTIONAL_CREDITS: &str = "promotional_credits";
/// Money paid back for plans (positive: a contra-revenue account; revenue stays as earned).
pub const REFUNDS: &str = "refunds";

/// One entry of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account.
    pub account: &'static str,
    /// The user, for per-user accounts.
    pub user_id: Option<String>,
    /// Signed cents.
    pub amount_cents: i64,
}

impl Entry {
    /// An entry of a platform account.
    pub fn platform(account: &'static str, amount_cents: i64) -> Self {
        Self {
            account,
            user_id: None,
            amount_cents,
        }
    }

    /// An entry of `user`'s account.
    pub fn user(account: &'static str, user: &str, amount_cents: i64) -> Self {
        Self {
            account,
            user_id: Some(user.to_owned()),
            amount_cents,
        }
    }
}

/// A movement of money to record.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    /// What kind of movement (`subscription_payment`, `credit_purchase`).
    pub kind: &'a str,
    /// In words.
    pub description: &'a str,
    /// What it belongs to (an invoice id).
    pub reference: &'a str,
    /// Its entries; they must sum to zero.
    pub entries: Vec<Entry>,
}

/// Why a posting was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The entries do not sum to zero.
    #[error("a ledger transaction of kind {kind} does not balance (off by {off} cents)")]
    Unbalanced {
        /// Its kind.
        kind: String,
        /// By how much.
        off: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Records `posting` in the caller's transaction; refuses one that does not balance.
pub async fn post(
    conn: &mut AnyConnection,
    posting: &Posting<'_>,
    now: i64,
) -> Result<String, LedgerError> {
    let off: i64 = posting.entries.iter().map(|e| e.amount_cents).sum();
    if off != 0 || posting.entries.is_empty() {
        return Err(LedgerError::Unbalanced {
            kind: posting.kind.to_owned(),
            off,
        });
    }
    let id = new_id();
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, description, reference, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.clone())
    .bind(posting.kind.to_owned())
    .bind(posting.description.to_owned())
    .bind(posting.reference.to_owned())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for e in &posting.entries {
        sqlx::query(
            "INSERT INTO ledger_entries (id, transaction_id, account, user_id, amount_cents, currency) \
             VALUES ($1, $2, $3, $4, $5, 'ZAR')",
        )
        .bind(new_id())
        .bind(id.clone())
        .bind(e.account)
        .bind(e.user_id.clone())
        .bind(e.amount_cents)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// `user`'s credit balance in cents.
pub async fn credit_balance<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) AS owed FROM ledger_entries \
         WHERE account = $1 AND user_id = $2",
    )
    .bind(CUSTOMER_CREDITS)
    .bind(user.to_owned())
    .fetch_one(db)
    .await?;
    Ok(-read_i64(&row, "owed")?)
}

/// One movement of a user's credits.
#[derive(Debug, Clone)]
pub struct Movement {
    /// The transaction.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its words.
    pub description: String,
    /// Credit added (positive) or spent (negative).
    pub amount_cents: i64,
    /// When (µs).
    pub created_at: i64,
}

/// The latest `limit` movements of `user`'s credits, newest first.
pub async fn credit_movements<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
    limit: i64,
) -> Result<Vec<Movement>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.id, t.kind, t.description, t.created_at, e.amount_cents \
         FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id \
         WHERE e.account = $1 AND e.user_id = $2 ORDER BY t.created_at DESC, t.id DESC LIMIT $3",
    )
    .bind(CUSTOMER_CREDITS)
    .bind(user.to_owned())
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Movement {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                description: r.try_get("description")?,
                amount_cents: -r.try_get::<i64, _>("amount_cents")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// How many transactions there are, and how many do not sum to zero.
pub async fn check<'c, E>(db: E) -> Result<(i64, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let total = sqlx::query("SELECT COUNT(*) AS n FROM ledger_transactions")
        .fetch_one(db)
        .await?;
    let unbalanced = sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT t.id FROM ledger_transactions t \
         LEFT JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.id \
         HAVING COALESCE(SUM(e.amount_cents), 0) <> 0 OR COUNT(e.id) = 0) u",
    )
    .fetch_one(db)
    .await?;
    Ok((read_i64(&total, "n")?, read_i64(&unbalanced, "n")?))
}

/// A count or a sum. PostgreSQL answers `SUM(BIGINT)` as NUMERIC, which the `Any` driver cannot
/// read, so sums are cast to BIGINT in the SQL.
fn read_i64(row: &sqlx::any::AnyRow, name: &str) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(name)
}
