//! Spending credit, for the domains that charge per use (pay-per-run agents): the debit is a
//! ledger transaction in the **caller's** transaction, so it commits together with the usage it
//! pays for or not at all, and a balance read from the ledger is never stale. The account's
//! billing row is taken first, so two spends of one account run one after the other and the
//! balance never goes below zero.

use sqlx::AnyConnection;

use crate::{error::AppError, state::AppState};

use super::{
    ledger::{self, Entry, Posting},
    store,
};

/// Why credit was not spent.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    /// The account has less credit than the use costs; nothing was spent.
    #[error("the account has {balance} credit cents; {needed} are needed")]
    Insufficient {
        /// Its balance.
        balance: i64,
        /// What the use costs.
        needed: i64,
    },
    /// The database or a bug.
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<sqlx::Error> for SpendError {
    fn from(e: sqlx::Error) -> Self {
        Self::App(e.into())
    }
}

/// Spends `cents` (> 0) of `user`'s credit in the caller's transaction, for `what` (words for
/// the statement) identified by `reference` (the usage's id); answers the balance left.
pub async fn spend_in(
    state: &AppState,
    conn: &mut AnyConnection,
    user: &str,
    cents: i64,
    what: &str,
    reference: &str,
) -> Result<i64, SpendError> {
    if cents <= 0 {
        return Err(AppError::Internal(anyhow::anyhow!("a spend of {cents} cents")).into());
    }
    let now = state.clock.now_micros();
    store::lock_subscription(&mut *conn, user, now).await?;
    let balance = ledger::credit_balance(&mut *conn, user).await?;
    if balance < cents {
        return Err(SpendError::Insufficient {
            balance,
            needed: cents,
        });
    }
    let posting = Posting {
        kind: "credit_spend",
        description: what,
        reference,
        entries: vec![
            Entry::user(ledger::CUSTOMER_CREDITS, user, cents),
            Entry::platform(ledger::PLATFORM_REVENUE, -cents),
        ],
    };
    ledger::post(&mut *conn, &posting, now)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(balance - cents)
}

/// [`spend_in`] in a transaction of its own.
pub async fn spend(
    state: &AppState,
    user: &str,
    cents: i64,
    what: &str,
    reference: &str,
) -> Result<i64, SpendError> {
    let mut tx = state.db.begin().await.map_err(AppError::from)?;
    let left = spend_in(state, &mut tx, user, cents, what, reference).await?;
    tx.commit().await?;
    Ok(left)
}
