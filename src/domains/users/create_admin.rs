//! `autorisen create-admin`: the only way, besides another admin, to make an admin. No default
//! account exists.

use crate::http::validate as text;
use crate::{
    db::{
        types::{new_id, now_micros},
        Db,
    },
    domains::{
        audit::{self, Event, Outcome, RequestMeta},
        auth::hashing::Hasher,
    },
    error::AppError,
};

use super::{
    password, profile,
    store::{self, NewUser},
    Email, Role,
};

/// Creates an admin account; returns its id. Refuses a weak password or a taken email.
pub async fn create_admin(
    db: &Db,
    email: &str,
    first_name: &str,
    last_name: &str,
    password_: &str,
) -> anyhow::Result<String> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email {e}"))?;
    let first_name =
        text::required(first_name, 100).map_err(|e| anyhow::anyhow!("--first-name {e}"))?;
    let last_name =
        text::clean(last_name, 100, false).map_err(|e| anyhow::anyhow!("--last-name {e}"))?;
    password::check(password_, &[email.as_str(), &first_name, &last_name])
        .map_err(|e| anyhow::anyhow!("the password {e}"))?;
    let hash = Hasher::new(1)
        .hash(password_)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let user = NewUser {
        id: new_id(),
        email: email.as_str().to_owned(),
        password_hash: hash,
        role: Role::Admin,
        first_name,
        last_name,
        profile: profile::empty(Role::Admin),
        email_verified: false,
        created_at: now_micros(),
    };
    let mut tx = db.begin().await?;
    if let Err(e) = store::insert(&mut *tx, &user).await {
        return Err(match crate::error::classify_error(e) {
            AppError::Conflict(_) => anyhow::anyhow!(
                "an account with {} already exists; an admin can change its role",
                user.email
            ),
            other => anyhow::anyhow!("{other}"),
        });
    }
    let event = Event {
        actor: None,
        action: "admin_created",
        target: Some(&user.id),
        outcome: Outcome::Success,
        details: serde_json::json!({"via": "cli"}),
    };
    audit::record(&mut tx, &RequestMeta::cli(), event).await?;
    tx.commit().await?;
    Ok(user.id)
}
