//! The SQL that creates accounts: registration, `create-admin` and imports.

use sqlx::{Any, Executor};

use crate::domains::users::Role;

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
