//! The SQL of accounts: reads, credentials, profile, role and status; creation in `create`, the
//! MFA and lock columns in [`security`], the admin listing in [`admin`]. Private to this domain: other
//! domains go through [`super::service`].

use sqlx::{any::AnyRow, Any, Executor, Row};

use crate::db::types::now_micros;

use super::{Role, User};

pub mod admin;
mod create;
pub mod security;

pub use create::{insert, insert_if_new, NewUser};

/// The columns [`from_row`] reads, for `SELECT {USER_COLUMNS} FROM users u`.
/// Booleans are read through `CAST(… AS INTEGER)`: sqlx's Any driver cannot decode SQLite's
/// BOOLEAN columns, and an integer decodes on both backends.
pub const USER_COLUMNS: &str = "u.id, u.email, u.role, u.first_name, u.last_name, u.profile, \
     CAST(u.is_active AS INTEGER) AS is_active, CAST(u.email_verified AS INTEGER) AS email_verified, \
     CAST(u.mfa_enabled AS INTEGER) AS mfa_enabled, u.token_epoch, u.created_at";

/// Joins the user whose id is in `user_id` (a column of the joining table) as `u`.
pub fn join_on(user_id: &str) -> String {
    format!("JOIN users u ON u.id = {user_id}")
}

/// Reads a [`User`] from a row selected with [`USER_COLUMNS`].
pub fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    let profile: String = row.try_get("profile")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::from_db(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{role}`").into()))?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        profile: serde_json::from_str(&profile).map_err(|e| sqlx::Error::Decode(e.into()))?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        mfa_enabled: row.try_get::<i64, _>("mfa_enabled")? != 0,
        token_epoch: row.try_get("token_epoch")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The user with `id`.
pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// What login needs about an account: the user, its hash and its lock.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// The stored password hash.
    pub password_hash: String,
    /// Locked until this time (µs), if locked.
    pub locked_until: Option<i64>,
}

/// The credentials of the account with `email` (already normalised).
pub async fn credentials_by_email<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    credentials_where(db, "u.email", email).await
}

/// The credentials of the account with `id`.
pub async fn credentials_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    credentials_where(db, "u.id", id).await
}

async fn credentials_where<'c>(
    db: impl Executor<'c, Database = Any>,
    column: &'static str,
    value: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, u.password_hash, u.locked_until FROM users u WHERE {column} = $1"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(value.to_owned())
        .fetch_optional(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        user: from_row(&row)?,
        password_hash: row.try_get("password_hash")?,
        locked_until: row.try_get("locked_until")?,
    }))
}

/// Replaces the password hash.
pub async fn set_password_hash<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash.to_owned())
        .bind(now_micros())
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Replaces names and profile.
pub async fn set_profile<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &User,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET first_name = $1, last_name = $2, profile = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(user.first_name.clone())
    .bind(user.last_name.clone())
    .bind(user.profile.to_string())
    .bind(now_micros())
    .bind(user.id.clone())
    .execute(db)
    .await?;
    Ok(())
}

/// Marks the email as confirmed.
pub async fn set_email_verified<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE id = $2")
        .bind(now_micros())
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Makes every access token issued so far for the user invalid.
pub async fn bump_token_epoch<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET token_epoch = token_epoch + 1, updated_at = $1 WHERE id = $2")
        .bind(now_micros())
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Sets role and active flag, and bumps the token epoch so that old tokens stop at once.
pub async fn set_role_and_status<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    role: Role,
    is_active: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET role = $1, is_active = $2, token_epoch = token_epoch + 1, updated_at = $3 \
         WHERE id = $4",
    )
    .bind(role.as_str())
    .bind(is_active)
    .bind(now_micros())
    .bind(id.to_owned())
    .execute(db)
    .await?;
    Ok(())
}

/// Records a successful login.
pub async fn touch_login<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
        .bind(now_micros())
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Whether an account with `email` exists.
pub async fn email_exists<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM users WHERE email = $1")
        .bind(email.to_owned())
        .fetch_optional(db)
        .await?
        .is_some())
}
