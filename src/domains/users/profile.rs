//! Role-specific profiles: customers describe their business, developers their skills.
//!
//! Profiles are stored as one JSON document per user. A PATCH merges field by field: a field
//! given a value is set, a field given `null` is cleared, an absent field is kept; an unknown
//! field is refused.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

use super::Role;
use crate::http::validate::{rules, Kind, Text};

/// A customer's business.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    /// Company name.
    #[schema(schema_with = company_name)]
    pub company_name: Option<String>,
    /// Industry.
    #[schema(schema_with = industry)]
    pub industry: Option<String>,
    /// Company size, such as `11-50`.
    #[schema(schema_with = short_text)]
    pub company_size: Option<String>,
    /// What the customer wants agents for.
    #[schema(schema_with = use_case)]
    pub use_case: Option<String>,
    /// Budget range.
    #[schema(schema_with = short_text)]
    pub budget_range: Option<String>,
    /// Phone number (digits, spaces, `+-().`).
    #[schema(schema_with = phone)]
    pub phone: Option<String>,
    /// Website (http or https URL).
    #[schema(schema_with = url)]
    pub website: Option<String>,
}

/// A developer's skills and presence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeveloperProfile {
    /// Company name.
    #[schema(schema_with = company_name)]
    pub company_name: Option<String>,
    /// Experience level, such as `senior`.
    #[schema(schema_with = short_text)]
    pub experience_level: Option<String>,
    /// Skills, at most 50 of at most 50 characters each.
    #[schema(schema_with = skills)]
    pub skills: Option<Vec<String>>,
    /// Portfolio (http or https URL).
    #[schema(schema_with = url)]
    pub portfolio_url: Option<String>,
    /// GitHub profile (http or https URL).
    #[schema(schema_with = url)]
    pub github_url: Option<String>,
    /// Availability, such as `part-time`.
    #[schema(schema_with = industry)]
    pub availability: Option<String>,
    /// Payout details: a placeholder until payments exist; not settable yet.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub payout: Option<serde_json::Value>,
}

// The profile fields' rules, shared by validation and the OpenAPI document.
const COMPANY_NAME: Text = Text::new(Kind::Line, 0, 200);
const INDUSTRY: Text = Text::new(Kind::Line, 0, 100);
const SHORT_TEXT: Text = Text::new(Kind::Line, 0, 50);
const USE_CASE: Text = Text::new(Kind::Multiline, 0, 2000);
const PHONE: Text = Text::new(Kind::Phone, 3, 32);
const SKILL: Text = Text::new(Kind::NonBlank, 1, 50);
/// The most skills a developer may list.
const MAX_SKILLS: usize = 50;

crate::text_schema! {
    company_name => COMPANY_NAME, true;
    industry => INDUSTRY, true;
    short_text => SHORT_TEXT, true;
    use_case => USE_CASE, true;
    phone => PHONE, true;
    url => rules::URL, true;
}

fn skills() -> utoipa::openapi::Array {
    use utoipa::openapi::{schema::SchemaType, ArrayBuilder, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(SKILL.schema(false))
        .max_items(Some(MAX_SKILLS))
        .build()
}

/// The JSON Schema of a profile patch on `PATCH /api/auth/me`: every field of either role (a
/// field of another role than the caller's is refused with 403), each nullable (`null` clears).
pub fn patch_schema() -> utoipa::openapi::Object {
    use utoipa::{
        openapi::{
            schema::{AdditionalProperties, Schema, SchemaType},
            ObjectBuilder, RefOr, Type,
        },
        PartialSchema,
    };
    let mut out = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Profile fields to set (`null` clears one); a customer's or a developer's fields, \
             refused with 403 when the caller's role has no such field (admins have none)",
        ));
    for schema in [CustomerProfile::schema(), DeveloperProfile::schema()] {
        if let RefOr::T(Schema::Object(object)) = schema {
            for (name, field) in object.properties {
                out = out.property(name, field);
            }
        }
    }
    out.build()
}

/// The fields a profile of `role` has.
pub fn fields(role: Role) -> &'static [&'static str] {
    match role {
        Role::Customer => &[
            "company_name",
            "industry",
            "company_size",
            "use_case",
            "budget_range",
            "phone",
            "website",
        ],
        Role::Developer => &[
            "company_name",
            "experience_level",
            "skills",
            "portfolio_url",
            "github_url",
            "availability",
        ],
        Role::Admin => &[],
    }
}

/// The profile fields in `patch` that exist, but not for `role` (an admin has none; a customer
/// has no `skills`).
pub fn foreign_fields(role: Role, patch: &serde_json::Value) -> Vec<String> {
    let own = fields(role);
    patch
        .as_object()
        .into_iter()
        .flat_map(|map| map.keys())
        .filter(|key| {
            !own.contains(&key.as_str())
                && [Role::Customer, Role::Developer]
                    .iter()
                    .any(|r| fields(*r).contains(&key.as_str()))
        })
        .cloned()
        .collect()
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
        // Checked before anything else: `null` clears a field, and must not let a name that is
        // no field through.
        if key != "payout" && !fields(role).contains(&key.as_str()) {
            return Err(vec![FieldError::new(
                format!("{prefix}{key}"),
                format!("is not a field of a {} profile", role.as_str()),
            )]);
        }
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

/// Checks one optional text field in place.
fn check(
    errors: &mut Vec<FieldError>,
    prefix: &str,
    name: &str,
    value: &mut Option<String>,
    rule: Text,
) {
    if let Some(v) = value.as_deref() {
        match rule.check(v) {
            Ok(clean) => *value = Some(clean),
            Err(e) => errors.push(FieldError::new(format!("{prefix}{name}"), e)),
        }
    }
}

fn validate_customer(
    mut p: CustomerProfile,
    prefix: &str,
) -> Result<CustomerProfile, Vec<FieldError>> {
    let mut errors = Vec::new();
    let e = &mut errors;
    check(e, prefix, "company_name", &mut p.company_name, COMPANY_NAME);
    check(e, prefix, "industry", &mut p.industry, INDUSTRY);
    check(e, prefix, "company_size", &mut p.company_size, SHORT_TEXT);
    check(e, prefix, "use_case", &mut p.use_case, USE_CASE);
    check(e, prefix, "budget_range", &mut p.budget_range, SHORT_TEXT);
    check(e, prefix, "website", &mut p.website, rules::URL);
    check(e, prefix, "phone", &mut p.phone, PHONE);
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
    let e = &mut errors;
    check(e, prefix, "company_name", &mut p.company_name, COMPANY_NAME);
    check(
        e,
        prefix,
        "experience_level",
        &mut p.experience_level,
        SHORT_TEXT,
    );
    check(e, prefix, "availability", &mut p.availability, INDUSTRY);
    check(e, prefix, "portfolio_url", &mut p.portfolio_url, rules::URL);
    check(e, prefix, "github_url", &mut p.github_url, rules::URL);
    if let Some(skills) = &mut p.skills {
        if skills.len() > MAX_SKILLS {
            errors.push(FieldError::new(
                format!("{prefix}skills"),
                format!("must list at most {MAX_SKILLS} skills"),
            ));
        }
        for (i, skill) in skills.iter_mut().enumerate() {
            match SKILL.check(skill) {
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
