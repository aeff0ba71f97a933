//! Admin requests and views.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    db::types::{from_micros, now_micros},
    domains::users::{service::UserSummary, Role},
    http::pagination::{PageNumber, Pagination, PerPage},
};

/// Filters of `GET /api/admin/users`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Only this role.
    pub role: Option<Role>,
    /// Text in email, first or last name (case-insensitive).
    #[param(schema_with = crate::http::validate::filter_schema)]
    pub q: Option<String>,
    /// Only active (true) or inactive (false) accounts.
    pub active: Option<bool>,
    /// Page number, from 1.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64)]
    pub page: Option<PageNumber>,
    /// Items per page, 1 to 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<PerPage>,
}

impl UserQuery {
    /// The page asked for.
    pub fn pagination(&self) -> Pagination {
        Pagination {
            page: self.page,
            per_page: self.per_page,
        }
    }
}

/// A user as admins see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminUserView {
    /// The id.
    pub id: String,
    /// The login address.
    pub email: String,
    /// The role.
    pub role: Role,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Whether the email is confirmed.
    pub email_verified: bool,
    /// Whether MFA is on.
    pub mfa_enabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// The last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Locked until this time, when locked.
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<UserSummary> for AdminUserView {
    fn from(u: UserSummary) -> Self {
        let now = now_micros();
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            first_name: u.first_name,
            last_name: u.last_name,
            is_active: u.is_active,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            created_at: from_micros(u.created_at),
            last_login_at: u.last_login_at.map(from_micros),
            // A lock that has ended is no lock.
            locked_until: u.locked_until.filter(|until| *until > now).map(from_micros),
        }
    }
}

/// `PATCH /api/admin/users/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUserPatch {
    /// The new role.
    pub role: Option<Role>,
    /// Activate or deactivate the account.
    pub is_active: Option<bool>,
}

/// Filters of `GET /api/admin/audit`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events by this user id.
    #[param(schema_with = crate::http::validate::filter_schema)]
    pub actor: Option<String>,
    /// Only this action.
    #[param(schema_with = crate::http::validate::filter_schema)]
    pub action: Option<String>,
    /// Only events about this user id.
    #[param(schema_with = crate::http::validate::filter_schema)]
    pub target: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Until this time (RFC 3339, exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Page number, from 1.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64)]
    pub page: Option<PageNumber>,
    /// Items per page, 1 to 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<PerPage>,
}
