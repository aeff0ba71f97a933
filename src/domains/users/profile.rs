//! Role-specific profiles: customers describe their business, developers their skills.
//!
//! Profiles are stored as one JSON document per user. A PATCH merges field by field: a field
//! given a value is set, a field given `null` is cleared, an absent field is kept; an unknown
//! field is refused.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

use super::Role;
use crate::http::validate as text;

/// A customer's business.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    /// Company name.
    pub company_name: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Company size, such as `11-50`.
    pub company_size: Option<String>,
    /// What the customer wants agents for.
    pub use_case: Option<String>,
    /// Budget range.
    pub budget_range: Option<String>,
    /// Phone number (digits, spaces, `+-()`).
    pub phone: Option<String>,
    /// Website (http or https URL).
    pub website: Option<String>,
}

/// A developer's skills and presence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeveloperProfile {
    /// Company name.
    pub company_name: Option<String>,
    /// Experience level, such as `senior`.
    pub experience_level: Option<String>,
    /// Skills, at most 50 of at most 50 characters each.
    pub skills: Option<Vec<String>>,
    /// Portfolio (http or https URL).
    pub portfolio_url: Option<String>,
    /// GitHub profile (http or https URL).
    pub github_url: Option<String>,
    /// Availability, such as `part-time`.
    pub availability: Option<String>,
    /// Payout details: a placeholder until payments exist; not settable yet.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub payout: Option<serde_json::Value>,
}

/// The empty profile of a new account with `role`.
pub fn empty(role: Role) -> serde_json::Value {
    match role {
        Role::Customer => serde_json::to_value(CustomerProfile::default()),
        Role::Developer => serde_json::to_value(DeveloperProfile::default()),
        Role::Admin => Ok(serde_json::json!({})),
    }
    .unwrap_or_default()
}

/// Applies `patch` (a JSON object) to `current` for a user with `role`, validating every field;
/// `prefix` names the fields in errors (`profile.` or ``).
pub fn merge(
    role: Role,
    current: &serde_json::Value,
    patch: &serde_json::Value,
    prefix: &str,
) -> Result<serde_json::Value, Vec<FieldError>> {
    let Some(patch) = patch.as_object() else {
        return Err(vec![FieldError::new(
            prefix.trim_end_matches('.'),
            "must be an object",
        )]);
    };
    let mut merged = current.as_object().cloned().unwrap_or_default();
    // Payout details are managed by payments, never through a profile patch.
    merged.remove("payout");
    for (key, value) in patch {
        if key == "payout" {
            return Err(vec![FieldError::new(
                format!("{prefix}payout"),
                "payout details cannot be set yet",
            )]);
        }
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    let merged = serde_json::Value::Object(merged);
    match role {
        Role::Customer => parse::<CustomerProfile>(&merged, prefix)
            .and_then(|p| validate_customer(p, prefix))
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
        Role::Developer => parse::<DeveloperProfile>(&merged, prefix)
            .and_then(|p| validate_developer(p, prefix))
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
        Role::Admin if patch.is_empty() => Ok(serde_json::json!({})),
        Role::Admin => Err(vec![FieldError::new(
            prefix.trim_end_matches('.'),
            "admins have no profile",
        )]),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    prefix: &str,
) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        vec![FieldError::new(
            format!("{prefix}{field}"),
            e.into_inner().to_string(),
        )]
    })
}

/// Checks one optional free-text field in place.
fn check(
    errors: &mut Vec<FieldError>,
    prefix: &str,
    name: &str,
    value: &mut Option<String>,
    max: usize,
    multiline: bool,
) {
    if let Some(v) = value.as_deref() {
        match text::clean(v, max, multiline) {
            Ok(clean) => *value = Some(clean),
            Err(e) => errors.push(FieldError::new(format!("{prefix}{name}"), e)),
        }
    }
}

fn check_url(errors: &mut Vec<FieldError>, prefix: &str, name: &str, value: &Option<String>) {
    if let Some(Err(e)) = value.as_deref().map(text::url) {
        errors.push(FieldError::new(format!("{prefix}{name}"), e));
    }
}

fn validate_customer(
    mut p: CustomerProfile,
    prefix: &str,
) -> Result<CustomerProfile, Vec<FieldError>> {
    let mut errors = Vec::new();
    check(
        &mut errors,
        prefix,
        "company_name",
        &mut p.company_name,
        200,
        false,
    );
    check(&mut errors, prefix, "industry", &mut p.industry, 100, false);
    check(
        &mut errors,
        prefix,
        "company_size",
        &mut p.company_size,
        50,
        false,
    );
    check(&mut errors, prefix, "use_case", &mut p.use_case, 2000, true);
    check(
        &mut errors,
        prefix,
        "budget_range",
        &mut p.budget_range,
        50,
        false,
    );
    check_url(&mut errors, prefix, "website", &p.website);
    if let Some(phone) = &p.phone {
        let ok = (3..=32).contains(&phone.len())
            && phone
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.'));
        if !ok {
            errors.push(FieldError::new(
                format!("{prefix}phone"),
                "must be 3 to 32 digits, spaces or +-().",
            ));
        }
    }
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}

fn validate_developer(
    mut p: DeveloperProfile,
    prefix: &str,
) -> Result<DeveloperProfile, Vec<FieldError>> {
    let mut errors = Vec::new();
    check(
        &mut errors,
        prefix,
        "company_name",
        &mut p.company_name,
        200,
        false,
    );
    check(
        &mut errors,
        prefix,
        "experience_level",
        &mut p.experience_level,
        50,
        false,
    );
    check(
        &mut errors,
        prefix,
        "availability",
        &mut p.availability,
        100,
        false,
    );
    check_url(&mut errors, prefix, "portfolio_url", &p.portfolio_url);
    check_url(&mut errors, prefix, "github_url", &p.github_url);
    if let Some(skills) = &mut p.skills {
        if skills.len() > 50 {
            errors.push(FieldError::new(
                format!("{prefix}skills"),
                "must list at most 50 skills",
            ));
        }
        for (i, skill) in skills.iter_mut().enumerate() {
            match text::required(skill, 50) {
                Ok(clean) => *skill = clean,
                Err(e) => errors.push(FieldError::new(format!("{prefix}skills[{i}]"), e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}
