//! The accounts service: what other domains call to read and change the `users` table, which
//! this domain alone owns (its SQL is in the private `store` module and its children).
//!
//! Every function takes an executor: the pool, a pooled connection (`&mut *conn`) or the
//! caller's transaction (`&mut *tx`). So the caller decides how many connections its reads take
//! and which transaction a change commits with (audit rows and outbox mail go in the same one).

use sqlx::{Any, AnyPool, Executor};

use super::{store, Email, Role, User};

pub use super::store::{
    admin::{UserFilter, UserSummary},
    security::MfaState,
    Credentials, NewUser,
};

/// Creates an account; a taken email is a unique violation (409 at the edge).
pub async fn create<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &NewUser,
) -> Result<(), sqlx::Error> {
    store::insert(db, user).await
}

/// The user with `id`.
pub async fn user_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<User>, sqlx::Error> {
    store::get(db, id).await
}

/// The user behind an email, for flows that must not reveal whether it exists: an email that is
/// not even valid finds nobody.
pub async fn user_by_email<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &str,
) -> Result<Option<User>, sqlx::Error> {
    let Ok(email) = Email::parse(email) else {
        return Ok(None);
    };
    Ok(store::credentials_by_email(db, email.as_str())
        .await?
        .map(|c| c.user))
}

/// Whether an account with `email` exists.
pub async fn email_exists<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &Email,
) -> Result<bool, sqlx::Error> {
    store::email_exists(db, email.as_str()).await
}

/// What a login checks (user, password hash, lock) for the account with `email`.
pub async fn credentials_by_email<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &Email,
) -> Result<Option<Credentials>, sqlx::Error> {
    store::credentials_by_email(db, email.as_str()).await
}

/// What a re-authentication checks (user, password hash, lock) for the account with `id`.
pub async fn credentials_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    store::credentials_by_id(db, id).await
}

/// Replaces the password hash.
pub async fn set_password_hash<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    hash: &str,
) -> Result<(), sqlx::Error> {
    store::set_password_hash(db, id, hash).await
}

/// Stores `user`'s names and profile.
pub async fn set_profile<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &User,
) -> Result<(), sqlx::Error> {
    store::set_profile(db, user).await
}

/// Marks the email as confirmed.
pub async fn set_email_verified<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    store::set_email_verified(db, id).await
}

/// Sets role and active flag; bumps the token epoch, so that old access tokens stop at once.
pub async fn set_role_and_status<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    role: Role,
    is_active: bool,
) -> Result<(), sqlx::Error> {
    store::set_role_and_status(db, id, role, is_active).await
}

/// Makes every access token issued so far for the user invalid.
pub async fn bump_token_epoch<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    store::bump_token_epoch(db, id).await
}

/// Records a successful login.
pub async fn touch_login<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    store::touch_login(db, id).await
}

/// The MFA secrets and the lock of the account with `id`; an unknown id is an error.
pub async fn mfa_state<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<MfaState, sqlx::Error> {
    store::security::mfa_state(db, id).await
}

/// Stores a new secret from MFA setup, pending until a code from it is confirmed.
pub async fn set_mfa_pending_secret<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    store::security::set_mfa_pending(db, id, secret).await
}

/// Claims TOTP time `step` for the account: true only when it is later than the last claimed
/// one, atomically, so that a code is accepted once across instances.
pub async fn claim_mfa_step<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    step: i64,
) -> Result<bool, sqlx::Error> {
    store::security::claim_mfa_step(db, id, step).await
}

/// Turns MFA on with `pending` as its secret; false when MFA is already on or `pending` is no
/// longer the pending secret (of two concurrent enables, one wins).
pub async fn enable_mfa<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    pending: &str,
) -> Result<bool, sqlx::Error> {
    store::security::enable_mfa(db, id, pending).await
}

/// Turns MFA off and forgets its secrets.
pub async fn disable_mfa<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    store::security::disable_mfa(db, id).await
}

/// Locks the account until `until` (µs) and restarts its failure count at `reset_at`.
pub async fn lock_until<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    until: i64,
    reset_at: i64,
) -> Result<(), sqlx::Error> {
    store::security::lock_until(db, id, until, reset_at).await
}

/// Restarts the account's failure count at `at` (µs) and ends any lock.
pub async fn reset_failures<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    store::security::reset_failures(db, id, at).await
}

/// One account as admins see it.
pub async fn summary(pool: &AnyPool, id: &str) -> Result<Option<UserSummary>, sqlx::Error> {
    store::admin::get(pool, id).await
}

/// One page (`limit` from `offset`) of the accounts matching `filter`, newest first, and how
/// many match in all.
pub async fn list_summaries(
    pool: &AnyPool,
    filter: &UserFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserSummary>, i64), sqlx::Error> {
    store::admin::list(pool, filter, limit, offset).await
}

/// The users side of a read that another domain joins to its own rows in ONE query.
///
/// For hot paths only, where a second round trip would show: every authenticated request reads
/// its session and its user together (`/api/auth/me` is benchmarked), and counting an account's
/// consecutive failures compares them with the account's reset point. The users domain keeps
/// the table name, the alias `u`, the column list and how a row becomes a [`User`]; the joining
/// domain keeps its own tables and criteria, and composes
///
/// ```text
/// SELECT {joined::COLUMNS}, s.expires_at FROM sessions s {joined::join_on("s.user_id")} WHERE …
/// ```
///
/// Only reads join. Every change to `users` goes through the functions above.
pub mod joined {
    use sqlx::any::AnyRow;

    use super::{store, User};

    /// The joined user's columns (as `u.…`) for the select list; read them with [`user`].
    pub const COLUMNS: &str = store::USER_COLUMNS;

    /// `JOIN users u ON u.id = {user_id}`, where `user_id` is the joining table's user column.
    pub fn join_on(user_id: &str) -> String {
        store::join_on(user_id)
    }

    /// The user from a row that selected [`COLUMNS`].
    pub fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
        store::from_row(row)
    }
}
