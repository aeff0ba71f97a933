//! The rules of user management.

use crate::{
    db::types::to_micros,
    domains::{
        audit::{self, types::AuditEntry, Event, Filter, RequestMeta},
        auth::sessions,
        users::{
            profile,
            service::{self as users, UserFilter},
            Role, User,
        },
    },
    error::AppError,
    http::pagination::{Page, Pagination},
    state::AppState,
};

use super::types::{AdminUserPatch, AdminUserView, AuditQuery, UserQuery};

fn not_found() -> AppError {
    AppError::NotFound("No such user.".into())
}

/// One page of users.
pub async fn list_users(
    state: &AppState,
    query: &UserQuery,
) -> Result<Page<AdminUserView>, AppError> {
    // `q` was checked against the filter rule (one line, at most 254 characters) by the route.
    let filter = UserFilter {
        role: query.role,
        text: query.q.as_deref(),
        active: query.active,
    };
    let page = query.pagination();
    let (items, total) =
        users::list_summaries(state.db.pool(), &filter, page.limit(), page.offset()).await?;
    Ok(page.wrap(items.into_iter().map(AdminUserView::from).collect(), total))
}

/// One user.
pub async fn get_user(state: &AppState, id: &str) -> Result<AdminUserView, AppError> {
    users::summary(state.db.pool(), id)
        .await?
        .map(AdminUserView::from)
        .ok_or_else(not_found)
}

/// The profile for `to`, keeping the fields both roles share; names the fields left behind.
fn profile_for(user: &User, to: Role) -> (serde_json::Value, Vec<String>) {
    let mut next = profile::empty(to);
    let mut dropped = Vec::new();
    if let (Some(old), Some(new)) = (user.profile.as_object(), next.as_object_mut()) {
        for (k, v) in old {
            if v.is_null() {
                continue;
            }
            if new.contains_key(k) {
                new.insert(k.clone(), v.clone());
            } else {
                dropped.push(k.clone());
            }
        }
    }
    (next, dropped)
}

/// Changes a user's role and/or status; their tokens stop working at once.
pub async fn patch_user(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    id: &str,
    patch: AdminUserPatch,
) -> Result<AdminUserView, AppError> {
    if id == admin.id {
        return Err(AppError::Conflict(
            "Admins cannot change their own role or status; ask another admin.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    let mut user = users::user_by_id(&mut *tx, id)
        .await?
        .ok_or_else(not_found)?;
    let role = patch.role.unwrap_or(user.role);
    let active = patch.is_active.unwrap_or(user.is_active);
    if role != user.role {
        let (next, dropped) = profile_for(&user, role);
        user.profile = next;
        users::set_profile(&mut *tx, &user).await?;
        let details =
            serde_json::json!({"from": user.role, "to": role, "profile_fields_dropped": dropped});
        audit::record(
            &mut tx,
            meta,
            Event {
                actor: Some(&admin.id),
                action: "user_role_changed",
                target: Some(id),
                outcome: audit::Outcome::Success,
                details,
            },
        )
        .await?;
    }
    if active != user.is_active {
        let details = serde_json::json!({"is_active": active});
        audit::record(
            &mut tx,
            meta,
            Event {
                actor: Some(&admin.id),
                action: "user_status_changed",
                target: Some(id),
                outcome: audit::Outcome::Success,
                details,
            },
        )
        .await?;
        if !active {
            sessions::revoke_all(&mut tx, id, None, "deactivated").await?;
        }
    }
    if role != user.role || active != user.is_active {
        users::set_role_and_status(&mut *tx, id, role, active).await?;
    }
    tx.commit().await?;
    get_user(state, id).await
}

/// Ends every session of a user and invalidates their access tokens.
pub async fn revoke_sessions(
    state: &AppState,
    meta: &RequestMeta,
    admin: &User,
    id: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    users::user_by_id(&mut *tx, id)
        .await?
        .ok_or_else(not_found)?;
    let n = sessions::revoke_all(&mut tx, id, None, "revoked_by_admin").await?;
    users::bump_token_epoch(&mut *tx, id).await?;
    let details = serde_json::json!({"sessions": n});
    audit::record(
        &mut tx,
        meta,
        Event {
            actor: Some(&admin.id),
            action: "sessions_revoked_by_admin",
            target: Some(id),
            outcome: audit::Outcome::Success,
            details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One page of the audit trail.
pub async fn audit(state: &AppState, query: AuditQuery) -> Result<Page<AuditEntry>, AppError> {
    let page = Pagination {
        page: query.page,
        per_page: query.per_page,
    };
    let filter = Filter {
        actor: query.actor,
        action: query.action,
        target: query.target,
        actions_in: None,
        from: query.from.map(to_micros),
        to: query.to.map(to_micros),
    };
    let (items, total) = audit::list(state.db.pool(), &filter, page.limit(), page.offset()).await?;
    Ok(page.wrap(items, total))
}
