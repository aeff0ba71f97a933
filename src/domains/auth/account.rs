//! What a signed-in user does to their own account: profile, password, sessions, activity.

use crate::http::validate as text;
use crate::{
    db::types::from_micros,
    domains::{
        audit::{self, types::AuditEntry, Event, Filter, RequestMeta},
        users::{password, profile, service as users, User},
    },
    error::{AppError, FieldError},
    http::pagination::{Page, Pagination},
    state::AppState,
};

use super::{
    hashing::Verified,
    lockout, sessions,
    types::{ChangePasswordRequest, SessionView, UpdateMeRequest},
};

/// The security events a user sees in their own activity.
pub const SECURITY_ACTIONS: &[&str] = &[
    "register",
    "login",
    "login_password_verified",
    "logout",
    "logout_all",
    "account_locked",
    "refresh_token_reused",
    "password_changed",
    "password_reset",
    "password_reset_requested",
    "email_verified",
    "mfa_enabled",
    "mfa_disabled",
    "mfa_code_failed",
    "session_revoked",
    "user_role_changed",
    "user_status_changed",
    "sessions_revoked_by_admin",
];

/// Updates the user's own names and profile; anything else was refused by the request type.
pub async fn update_me(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    req: UpdateMeRequest,
) -> Result<User, AppError> {
    if let Some(patch) = &req.profile {
        let foreign = profile::foreign_fields(user.role, patch);
        if !foreign.is_empty() {
            return Err(AppError::Forbidden(format!(
                "A {} profile has no field {}.",
                user.role.as_str(),
                foreign.join(", ")
            )));
        }
    }
    let mut errors = Vec::new();
    let mut next = user.clone();
    if let Some(first) = &req.first_name {
        match text::required(first, 100) {
            Ok(v) => next.first_name = v,
            Err(e) => errors.push(FieldError::new("first_name", e)),
        }
    }
    if let Some(last) = &req.last_name {
        match text::clean(last, 100, false) {
            Ok(v) => next.last_name = v,
            Err(e) => errors.push(FieldError::new("last_name", e)),
        }
    }
    if let Some(patch) = &req.profile {
        match profile::merge(user.role, &user.profile, patch, "profile.") {
            Ok(p) => next.profile = p,
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    save_profile(state, meta, &next).await?;
    Ok(next)
}

/// Stores names and profile with an audit row.
pub async fn save_profile(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    users::set_profile(&mut *tx, user).await?;
    audit::record(&mut tx, meta, Event::own(&user.id, "profile_updated")).await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the password after checking the current one; ends the user's other sessions.
pub async fn change_password(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    sid: &str,
    req: ChangePasswordRequest,
) -> Result<(), AppError> {
    // Both reads on one pooled connection, given back before the slow password check.
    let mut conn = state.db.pool().acquire().await?;
    let creds = users::credentials_by_id(&mut *conn, &user.id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("The account no longer exists.".into()))?;
    lockout::ensure_open(&mut conn, &user.id, creds.locked_until).await?;
    drop(conn);
    let subject = lockout::password_subject(&user.email);
    let claim = lockout::claim(state, &subject, lockout::PASSWORD).await?;
    if state
        .get::<super::Auth>()
        .hasher
        .verify(Some(&creds.password_hash), &req.current_password)
        .await?
        == Verified::No
    {
        let mut tx = state.db.begin().await?;
        audit::record(
            &mut tx,
            meta,
            Event::own(&user.id, "password_changed")
                .failed()
                .with(serde_json::json!({"reason": "wrong_current_password"})),
        )
        .await?;
        let account = Some((user.id.as_str(), user.email.as_str()));
        let delay =
            lockout::record_failure(&mut tx, meta, &subject, lockout::PASSWORD, claim, account)
                .await?;
        tx.commit().await?;
        state.mail.wake();
        tokio::time::sleep(delay).await;
        // Signed in, but the step-up proof failed: 403, so clients keep the session.
        return Err(AppError::Forbidden(
            "The current password is incorrect.".into(),
        ));
    }
    password::check(
        &req.new_password,
        &[&user.email, &user.first_name, &user.last_name],
    )
    .map_err(|e| AppError::invalid("new_password", e))?;
    let hash = state
        .get::<super::Auth>()
        .hasher
        .hash(&req.new_password)
        .await?;
    let mut tx = state.db.begin().await?;
    users::set_password_hash(&mut *tx, &user.id, &hash).await?;
    let ended = sessions::revoke_all(&mut tx, &user.id, Some(sid), "password_changed").await?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "password_changed").with(serde_json::json!({"sessions_ended": ended})),
    )
    .await?;
    super::links::password_changed(&mut tx, user).await?;
    tx.commit().await?;
    state.mail.wake();
    Ok(())
}

/// The user's live sessions, marking the one this request uses.
pub async fn list_sessions(
    state: &AppState,
    user: &User,
    sid: &str,
) -> Result<Vec<SessionView>, AppError> {
    let rows = sessions::list(state.db.pool(), &user.id).await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == sid,
            id: s.id,
            created_at: from_micros(s.created_at),
            last_used_at: from_micros(s.last_used_at),
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect())
}

/// Ends one of the user's own sessions; another user's session is "not found".
pub async fn delete_session(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    id: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    if !sessions::revoke(&mut tx, id, &user.id, "revoked_by_user").await? {
        return Err(AppError::NotFound("No such session.".into()));
    }
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "session_revoked").with(serde_json::json!({"session_id": id})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The user's own security events, newest first.
pub async fn activity(
    state: &AppState,
    user: &User,
    page: Pagination,
) -> Result<Page<AuditEntry>, AppError> {
    let filter = Filter {
        target: Some(user.id.clone()),
        actions_in: Some(SECURITY_ACTIONS),
        ..Filter::default()
    };
    let (mut items, total) =
        audit::list(state.db.pool(), &filter, page.limit(), page.offset()).await?;
    // Events an admin caused are shown, but not the admin's address or browser.
    for item in &mut items {
        if item.actor_id.as_deref() != Some(user.id.as_str()) {
            item.ip.clear();
            item.user_agent.clear();
        }
    }
    Ok(page.wrap(items, total))
}
