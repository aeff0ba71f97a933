//! Email-link tokens: password reset (30 minutes) and email verification (24 hours). Single use,
//! stored as keyed hashes, delivered through the outbox in the transaction that makes them.

use sqlx::{AnyConnection, Row};

use crate::{
    db::types::now_micros,
    domains::{
        audit::{self, Event, RequestMeta},
        users::{password, service as users, User},
    },
    error::{AppError, FieldError},
    jobs::NewJob,
    mail::{self, Email},
    state::AppState,
};

use super::emails::Template;
use super::{lockout, opaque, sessions};

const RESET: &str = "password_reset";
const VERIFY: &str = "verify_email";
const RESET_MICROS: i64 = 30 * 60 * 1_000_000;
const VERIFY_MICROS: i64 = 24 * 3600 * 1_000_000;

fn link(state: &AppState, path: &str, token: &str) -> String {
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    format!("{base}{path}?token={token}")
}

/// Marks every unused token of `purpose` held by `user_id` as used.
async fn retire(conn: &mut AnyConnection, user_id: &str, purpose: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE user_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL")
        .bind(now_micros())
        .bind(user_id.to_owned())
        .bind(purpose.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What follows any password change, in its transaction: open reset links are retired (an older
/// link must not change the password again) and the owner is sent a notice.
pub async fn password_changed(conn: &mut AnyConnection, user: &User) -> Result<(), sqlx::Error> {
    retire(conn, &user.id, RESET).await?;
    if !super::emails::allowed(conn, &user.email, "password_changed").await? {
        return Ok(());
    }
    mail::enqueue(
        conn,
        &Email {
            to: user.email.clone(),
            template: Template::PasswordChanged,
        },
    )
    .await
}

/// Makes a new token for `purpose`, retiring earlier unused ones of the same purpose.
async fn create(
    state: &AppState,
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: &str,
    ttl: i64,
) -> Result<String, AppError> {
    retire(conn, user_id, purpose).await?;
    let now = now_micros();
    let token = opaque::new_token();
    sqlx::query("INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(state.get::<super::Auth>().keys.email_link_hash(&token))
        .bind(user_id.to_owned())
        .bind(purpose.to_owned())
        .bind(now + ttl)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(token)
}

/// The user a live token of `purpose` belongs to (not consumed).
async fn holder(
    state: &AppState,
    conn: &mut AnyConnection,
    token: &str,
    purpose: &str,
) -> Result<Option<String>, AppError> {
    let row = sqlx::query("SELECT user_id FROM user_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3")
        .bind(state.get::<super::Auth>().keys.email_link_hash(token))
        .bind(purpose.to_owned())
        .bind(now_micros())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("user_id")).transpose()?)
}

/// Uses up a token; false when another request used it first.
async fn consume(
    state: &AppState,
    conn: &mut AnyConnection,
    token: &str,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE user_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now_micros())
    .bind(state.get::<super::Auth>().keys.email_link_hash(token))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn bad_token() -> AppError {
    // The token is the credential for this request: a wrong one is 401, as for a refresh token.
    AppError::Unauthorized(
        "The link is invalid, expired or already used; ask for a new one.".into(),
    )
}

/// Queues a verification email for `user` in `conn` (the caller's transaction), unless the
/// recipient's budget for it is spent (then no new link is made either: the last one stays good).
pub async fn queue_verification(
    state: &AppState,
    conn: &mut AnyConnection,
    user: &User,
) -> Result<(), AppError> {
    if !super::emails::allowed(conn, &user.email, "verify_email").await? {
        return Ok(());
    }
    let token = create(state, conn, &user.id, VERIFY, VERIFY_MICROS).await?;
    let email = Email {
        to: user.email.clone(),
        template: Template::VerifyEmail {
            link: link(state, "/auth/verify-email", &token),
        },
    };
    mail::enqueue(conn, &email).await?;
    Ok(())
}

/// Sends a new verification email to a signed-in user whose address is not confirmed yet.
pub async fn request_verification(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
) -> Result<(), AppError> {
    if user.email_verified {
        return Err(AppError::Conflict(
            "The email address is already verified.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    queue_verification(state, &mut tx, user).await?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "email_verification_requested"),
    )
    .await?;
    tx.commit().await?;
    state.mail.wake();
    Ok(())
}

/// Confirms an email address with the token from its link.
pub async fn confirm_verification(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let Some(user_id) = holder(state, &mut tx, token, VERIFY).await? else {
        return Err(bad_token());
    };
    if !consume(state, &mut tx, token).await? {
        return Err(bad_token());
    }
    users::set_email_verified(&mut *tx, &user_id).await?;
    audit::record(&mut tx, meta, Event::own(&user_id, "email_verified")).await?;
    tx.commit().await?;
    Ok(())
}

/// The job that does the work of a reset request (see [`request_reset`]).
pub const RESET_JOB: &str = "auth.password_reset";

/// Takes a reset request: the work is queued whether or not an account has `email`, so the
/// answer takes the same time either way and tells nothing (the job then sends the link to an
/// active account, within its email budget).
pub async fn request_reset(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
) -> Result<(), AppError> {
    crate::http::validate::filters(&[("email", Some(email))])?;
    super::budget::spend(state, email).await?;
    let payload = serde_json::json!({
        "email": email,
        "ip": meta.ip,
        "user_agent": meta.user_agent,
        "request_id": meta.request_id,
    });
    let mut conn = state.db.pool().acquire().await?;
    state
        .jobs
        .enqueue(&mut conn, NewJob::new(RESET_JOB, payload))
        .await?;
    drop(conn);
    state.jobs.wake();
    Ok(())
}

/// The reset job: sends a reset link to the active account with the email of `payload`, if any.
pub async fn send_reset(state: &AppState, payload: &serde_json::Value) -> Result<(), AppError> {
    let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
    let meta = RequestMeta {
        ip: text("ip"),
        user_agent: text("user_agent"),
        request_id: text("request_id"),
    };
    let Some(user) = users::user_by_email(state.db.pool(), &text("email"))
        .await?
        .filter(|u| u.is_active)
    else {
        return Ok(());
    };
    let mut tx = state.db.begin().await?;
    if !super::emails::allowed(&mut tx, &user.email, "password_reset").await? {
        tx.commit().await?;
        return Ok(());
    }
    let token = create(state, &mut tx, &user.id, RESET, RESET_MICROS).await?;
    let email = Email {
        to: user.email.clone(),
        template: Template::PasswordReset {
            link: link(state, "/auth/reset-password", &token),
        },
    };
    mail::enqueue(&mut tx, &email).await?;
    audit::record(
        &mut tx,
        &meta,
        Event {
            actor: None,
            ..Event::own(&user.id, "password_reset_requested")
        },
    )
    .await?;
    tx.commit().await?;
    state.mail.wake();
    Ok(())
}

/// Sets a new password with a reset token; ends every session and any lock.
pub async fn confirm_reset(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
    new_password: &str,
) -> Result<(), AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let Some(user_id) = holder(state, &mut conn, token, RESET).await? else {
        return Err(bad_token());
    };
    let user = users::user_by_id(&mut *conn, &user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(bad_token)?;
    drop(conn);
    password::check(
        new_password,
        &[&user.email, &user.first_name, &user.last_name],
    )
    .map_err(|e| AppError::Validation(vec![FieldError::new("new_password", e)]))?;
    let hash = state.get::<super::Auth>().hasher.hash(new_password).await?;
    let mut tx = state.db.begin().await?;
    if !consume(state, &mut tx, token).await? {
        return Err(bad_token());
    }
    users::set_password_hash(&mut *tx, &user.id, &hash).await?;
    let ended = sessions::revoke_all(&mut tx, &user.id, None, "password_reset").await?;
    let subject = lockout::password_subject(&user.email);
    lockout::record_success(&mut tx, &subject, lockout::PASSWORD, &user.id).await?;
    let event = Event {
        actor: None,
        ..Event::own(&user.id, "password_reset")
    }
    .with(serde_json::json!({"sessions_ended": ended}));
    audit::record(&mut tx, meta, event).await?;
    password_changed(&mut tx, &user).await?;
    tx.commit().await?;
    state.mail.wake();
    Ok(())
}
