//! Validated account types: [`Email`], [`Role`], the stored [`User`] and its public [`UserView`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{db::types::from_micros, http::validate::rules};

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    /// Validates an address as typed by a user (the rule the OpenAPI document states: see
    /// [`rules::EMAIL`]) and lower-cases it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        rules::EMAIL
            .check(raw)
            .map(|value| Self(value.to_ascii_lowercase()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uses agents (the default).
    Customer,
    /// Builds agents.
    Developer,
    /// Manages users; made only by `autorisen create-admin` or another admin.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Developer => "developer",
            Self::Admin => "admin",
        }
    }

    /// Reads a stored name.
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Self::Customer),
            "developer" => Some(Self::Developer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The roles a visitor may choose at registration, with the production client's aliases
    /// (`client`, `user`), spelled exactly so; `admin` and anything else is refused.
    pub fn for_registration(value: &str) -> Result<Self, String> {
        match value {
            "customer" | "client" | "user" => Ok(Self::Customer),
            "developer" => Ok(Self::Developer),
            "admin" => Err("admin accounts cannot be registered; an admin grants that role".into()),
            other => Err(format!(
                "`{other}` is not a role; choose customer or developer"
            )),
        }
    }
}

/// A user as stored, without secrets (no password hash, no MFA secret).
#[derive(Debug, Clone)]
pub struct User {
    /// The id (UUID).
    pub id: String,
    /// The login address.
    pub email: String,
    /// The role.
    pub role: Role,
    /// Given name.
    pub first_name: String,
    /// Family name (may be empty).
    pub last_name: String,
    /// The role-specific profile as JSON.
    pub profile: serde_json::Value,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Whether the email address was confirmed.
    pub email_verified: bool,
    /// Whether logins need a TOTP or recovery code.
    pub mfa_enabled: bool,
    /// Bumped whenever every access token of the user must stop working.
    pub token_epoch: i64,
    /// Creation time (µs).
    pub created_at: i64,
}

/// The user as the API shows it to themselves.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// The id.
    pub id: String,
    /// The login address.
    pub email: String,
    /// `customer`, `developer` or `admin`.
    pub role: Role,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Whether the email address was confirmed.
    pub email_verified: bool,
    /// Whether MFA is on.
    pub mfa_enabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// The role-specific profile (customer or developer fields; empty for admins).
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role,
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            created_at: from_micros(u.created_at),
            profile: u.profile.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased() {
        assert_eq!(
            Email::parse("Jane.Doe@Example.COM").unwrap().as_str(),
            "jane.doe@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@localhost",
            "a b@example.com",
            " jane@example.com",
            "\"jane\"@example.com",
            "jane..doe@example.com",
            "jane@exa\u{200B}mple.com",
            "jane@ex\u{e4}mple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_cannot_be_chosen_at_registration() {
        assert!(Role::for_registration("admin").is_err());
        assert!(Role::for_registration("superuser").is_err());
        assert_eq!(Role::for_registration("client").unwrap(), Role::Customer);
        assert_eq!(
            Role::for_registration("developer").unwrap(),
            Role::Developer
        );
        assert!(Role::for_registration("Developer").is_err());
        assert!(Role::for_registration(" customer").is_err());
    }
}
