//! Requests and responses of the auth routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    domains::users::{
        password,
        profile::{self, CustomerProfile, DeveloperProfile},
        UserView,
    },
    http::validate::rules,
};

crate::text_schema! {
    given_name_or_null => rules::GIVEN_NAME, true;
    family_name_or_null => rules::FAMILY_NAME, true;
}

/// `POST /api/auth/register`. Its schema is written out below: which profile fields are allowed
/// depends on the role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The login address.
    pub email: String,
    /// 12 to 128 characters, not guessable.
    pub password: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    #[serde(default)]
    pub last_name: String,
    /// `customer` (default; also `client`, `user`) or `developer`.
    pub role: Option<String>,
    /// Role-specific profile fields.
    pub profile: Option<serde_json::Value>,
}

/// The roles a visitor may register with that make a customer (`null`: the default).
pub const CUSTOMER_ROLES: [&str; 3] = ["customer", "client", "user"];

/// A nullable `enum` of `values`.
pub fn role_enum(values: &[&str], nullable: bool) -> serde_json::Value {
    let mut values: Vec<serde_json::Value> = values.iter().map(|v| (*v).into()).collect();
    if nullable {
        values.push(serde_json::Value::Null);
    }
    serde_json::json!({ "enum": values })
}

/// A role a visitor may register with, or `null` (the default, customer).
pub fn role_property() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::{schema::SchemaType, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            CUSTOMER_ROLES
                .iter()
                .map(|r| serde_json::Value::from(*r))
                .chain([
                    serde_json::Value::from("developer"),
                    serde_json::Value::Null,
                ]),
        ))
}

/// `{"anyOf": [{"$ref": …}, {"type": "null"}]}`: a profile of one role, or `null`.
pub fn profile_or_null(component: &str) -> serde_json::Value {
    serde_json::json!({ "anyOf": [
        { "$ref": format!("#/components/schemas/{component}") },
        { "type": "null" },
    ]})
}

/// An object schema with keywords utoipa has no builder for (`anyOf` beside `properties`,
/// `not`), written as they appear in the document.
pub fn with_keywords(
    object: utoipa::openapi::ObjectBuilder,
    keywords: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::extensions::Extensions;
    let mut object = object.build();
    object.extensions = Some(Extensions::from_iter(keywords));
    utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))
}

/// The fields every registration body has, with the rules of [`rules`].
pub fn registration_base(description: &str) -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::{schema::AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property("email", rules::EMAIL.schema(false))
        .property("password", password::schema())
        .required("email")
        .required("password")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

impl utoipa::PartialSchema for RegisterRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::SchemaType, ObjectBuilder, Type};
        let base = registration_base(
            "A new customer or developer. `profile` holds the fields of the chosen role's \
             profile (`CustomerProfile` for customer, client or user; `DeveloperProfile` for \
             developer).",
        )
        .property("first_name", rules::GIVEN_NAME.schema(false))
        .property("last_name", rules::FAMILY_NAME.schema(false))
        .property(
            "role",
            role_property().description(Some(
                "`customer` (the default; also `client`, `user`) or `developer`",
            )),
        )
        .property(
            "profile",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
                .description(Some("The chosen role's profile fields")),
        )
        .required("first_name");
        with_keywords(
            base,
            [(
                "anyOf",
                serde_json::json!([
                    { "properties": {
                        "role": role_enum(&CUSTOMER_ROLES, true),
                        "profile": profile_or_null("CustomerProfile"),
                    }},
                    { "required": ["role"], "properties": {
                        "role": role_enum(&["developer"], false),
                        "profile": profile_or_null("DeveloperProfile"),
                    }},
                ]),
            )],
        )
    }
}

impl ToSchema for RegisterRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("CustomerProfile".into(), CustomerProfile::schema()));
        schemas.push(("DeveloperProfile".into(), DeveloperProfile::schema()));
    }
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The login address (any line of at most 254 characters: a wrong one is the same 401).
    #[schema(schema_with = crate::http::validate::filter_schema)]
    pub email: String,
    /// The password.
    pub password: String,
}

/// A new token pair and the user it belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The user.
    pub user: UserView,
    /// A short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// An opaque token for `/api/auth/refresh`, usable once. Always set as an HttpOnly cookie;
    /// in the body only for clients that send no `Origin` (scripts, mobile apps): a browser
    /// gets it in the cookie alone, out of reach of page scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The password was right and the account has MFA: a code is needed next.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always true.
    pub mfa_required: bool,
    /// Pass to `/api/auth/mfa/verify` with the code.
    pub mfa_token: String,
    /// Seconds until the MFA token expires.
    pub expires_in: u64,
}

/// The answer to a login.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    /// Logged in.
    Tokens(TokenResponse),
    /// A second factor is required.
    Mfa(MfaChallenge),
}

/// `POST /api/auth/refresh` (the token may come from the cookie instead).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: String,
}

/// `PATCH /api/auth/me`: own names and profile only.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// Given name.
    #[schema(schema_with = given_name_or_null)]
    pub first_name: Option<String>,
    /// Family name.
    #[schema(schema_with = family_name_or_null)]
    pub last_name: Option<String>,
    /// Profile fields to set (`null` clears one).
    #[schema(schema_with = profile::patch_schema)]
    pub profile: Option<serde_json::Value>,
}

/// `POST /api/auth/change-password`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use.
    pub current_password: String,
    /// The new password.
    #[schema(schema_with = password::schema)]
    pub new_password: String,
}

/// One of the user's sessions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When its refresh token was last used.
    pub last_used_at: DateTime<Utc>,
    /// The address it started from.
    pub ip: String,
    /// The user agent it started with.
    pub user_agent: String,
    /// Whether this request is made with it.
    pub current: bool,
}

/// A request was accepted; its effect (an email) happens later, if at all.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
    /// What happens next.
    pub detail: &'static str,
}

/// `POST /api/auth/password-reset/request`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's address (any line of at most 254 characters: the answer is the same).
    #[schema(schema_with = crate::http::validate::filter_schema)]
    pub email: String,
}

/// `POST /api/auth/password-reset/confirm`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the email link.
    pub token: String,
    /// The new password.
    #[schema(schema_with = password::schema)]
    pub new_password: String,
}

/// `POST /api/auth/verify-email/confirm`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfirm {
    /// The token from the email link.
    pub token: String,
}

/// `POST /api/auth/mfa/setup`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaSetup {
    /// The TOTP secret, base32.
    pub secret: String,
    /// An `otpauth://` URI for authenticator apps (QR code).
    pub otpauth_uri: String,
}

/// `POST /api/auth/mfa/enable`: the password again (a change of factors needs it), and a first
/// code from the pending secret.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaEnable {
    /// The account password.
    pub password: String,
    /// Six digits from the authenticator app.
    pub code: String,
}

/// `POST /api/auth/mfa/enable` answer: shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use recovery codes.
    pub recovery_codes: Vec<String>,
}

/// `POST /api/auth/mfa/disable`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaDisable {
    /// The account password.
    pub password: String,
    /// A TOTP code or an unused recovery code.
    pub code: String,
}

/// `POST /api/auth/mfa/verify`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerify {
    /// The token from the login answer.
    pub mfa_token: String,
    /// A TOTP code or an unused recovery code.
    pub code: String,
}
