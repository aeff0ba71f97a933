//! The accounts service: what other domains call to read and change the `users` table, which
//! this domain alone owns.

use sqlx::{Any, Executor};

use super::{store, Email, User};

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
