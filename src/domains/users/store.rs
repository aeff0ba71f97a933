//! The SQL of accounts.

use sqlx::{any::AnyRow, Any, Executor, Row};

use crate::db::types::now_micros;

use super::{Role, User};

/// The columns [`from_row`] reads, for `SELECT {USER_COLUMNS} FROM users u`.
/// Booleans are read through `CAST(… AS INTEGER)`: sqlx's Any driver cannot decode SQLite's
/// BOOLEAN columns, and an integer decodes on both backends.
pub const USER_COLUMNS: &str = "u.id, u.email, u.role, u.first_name, u.last_name, u.profile, \
     CAST(u.is_active AS INTEGER) AS is_active, CAST(u.email_verified AS INTEGER) AS email_verified, \
     CAST(u.mfa_enabled AS INTEGER) AS mfa_enabled, u.token_epoch, u.created_at";

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

/// A new account, validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The id to create it with.
    pub id: String,
    /// The validated email.
    pub email: String,
    /// An argon2id (or imported bcrypt) hash.
    pub password_hash: String,
    /// The role.
    pub role: Role,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// The profile document.
    pub profile: serde_json::Value,
    /// Whether the email is already confirmed (imports).
    pub email_verified: bool,
    /// Creation time (µs).
    pub created_at: i64,
}

const INSERT: &str = "INSERT INTO users (id, email, password_hash, role, first_name, last_name, \
     profile, is_active, email_verified, token_epoch, mfa_enabled, failures_reset_at, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8, 0, FALSE, $9, $9, $9)";

/// Inserts `user`; a duplicate email is a unique violation (409 at the edge).
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &NewUser,
) -> Result<(), sqlx::Error> {
    bind_new(sqlx::query(INSERT), user).execute(db).await?;
    Ok(())
}

/// Inserts `user` unless the email exists; returns whether it was inserted (imports).
pub async fn insert_if_new<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &NewUser,
) -> Result<bool, sqlx::Error> {
    let sql = format!("{INSERT} ON CONFLICT (email) DO NOTHING");
    Ok(bind_new(sqlx::query(&sql), user)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

fn bind_new<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    u: &NewUser,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    q.bind(u.id.clone())
        .bind(u.email.clone())
        .bind(u.password_hash.clone())
        .bind(u.role.as_str())
        .bind(u.first_name.clone())
        .bind(u.last_name.clone())
        .bind(u.profile.to_string())
        .bind(u.email_verified)
        .bind(u.created_at)
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
