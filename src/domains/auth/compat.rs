//! Routes of the production web client, answering exactly as the canonical routes do.
//!
//! `validate-email` tells whether an address is registered, as the old client expects; that is
//! account enumeration by design, so it relies on the per-IP `auth` rate limit.

use axum::{extract::State, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domains::auth::extract::AuthUser,
    domains::{
        audit::RequestMeta,
        users::{
            password::{self, Assessment},
            service as users, Email, UserView,
        },
    },
    error::{AppError, FieldError, Problem},
    http::{json::AppJson, query::AppQuery},
    state::AppState,
};

use super::cookie::FromBrowser;
use super::types::{
    profile_or_null, registration_base, role_enum, role_property, with_keywords, LoginRequest,
    LoginResponse, RegisterRequest, TokenResponse, CUSTOMER_ROLES,
};
use crate::{
    domains::users::Role,
    http::validate::{rules, Kind, Text},
};

/// The compatibility routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(v2_login))
        .routes(routes!(v2_register))
        .routes(routes!(v2_logout))
        .routes(routes!(v2_logout_all))
        .routes(routes!(user_profile))
        .routes(routes!(validate_email))
        .routes(routes!(validate_password))
}

/// Same as `POST /api/auth/login`.
#[utoipa::path(post, path = "/api/auth/v2/login", tag = "auth-compat", request_body = LoginRequest, responses(
    (status = 200, description = "Tokens, or an MFA challenge", body = LoginResponse),
    (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Locked", body = Problem, content_type = "application/problem+json")))]
async fn v2_login(
    state: State<AppState>,
    meta: RequestMeta,
    browser: FromBrowser,
    body: AppJson<LoginRequest>,
) -> Result<Response, AppError> {
    super::routes::login(state, meta, browser, body).await
}

/// The production client's registration body (its schema is written out below).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V2Register {
    /// The login address.
    pub email: String,
    /// The password.
    pub password: String,
    /// "Given Family" (split at the first space) instead of first/last name.
    pub full_name: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// `client`/`customer`/`user` or `developer`.
    pub user_role: Option<String>,
    /// Same as `user_role`.
    pub role: Option<String>,
    /// Goes to `profile.company_name`.
    pub company_name: Option<String>,
    /// Role-specific profile fields.
    pub profile: Option<serde_json::Value>,
}

impl utoipa::PartialSchema for V2Register {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::SchemaType, ObjectBuilder, Type};
        let roles = role_property;
        let base = registration_base(
            "The production client's registration: a name as `first_name` (and `last_name`) or \
             as `full_name` (split at its first space; `last_name`, when given, wins over the \
             rest); the role as `user_role` or `role` (`user_role` wins when both are given); \
             `company_name` goes to the profile (given once: here or in `profile`).",
        )
        .property("full_name", FULL_NAME.schema(true))
        .property("first_name", rules::GIVEN_NAME.schema(true))
        .property("last_name", rules::FAMILY_NAME.schema(true))
        .property("user_role", roles())
        .property("role", roles())
        .property("company_name", COMPANY_NAME.schema(true))
        .property(
            "profile",
            ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Object, Type::Null])),
        );
        let string = serde_json::json!({ "type": "string" });
        let absent = serde_json::json!({ "type": "null" });
        let customer = role_enum(&CUSTOMER_ROLES, true);
        let developer = role_enum(&["developer"], false);
        let customer_profile = profile_or_null("CustomerProfile");
        let developer_profile = profile_or_null("DeveloperProfile");
        with_keywords(
            base,
            [
                (
                    "allOf",
                    serde_json::json!([
                        { "anyOf": [
                            { "required": ["first_name"], "properties": { "first_name": string } },
                            { "required": ["full_name"], "properties": { "full_name": string } },
                        ]},
                        { "anyOf": [
                            { "required": ["user_role"], "properties": {
                                "user_role": developer, "profile": developer_profile } },
                            { "required": ["user_role"], "properties": {
                                "user_role": role_enum(&CUSTOMER_ROLES, false),
                                "profile": customer_profile } },
                            { "required": ["role"], "properties": {
                                "user_role": absent, "role": developer,
                                "profile": developer_profile } },
                            { "properties": {
                                "user_role": absent, "role": customer,
                                "profile": customer_profile } },
                        ]},
                    ]),
                ),
                (
                    "not",
                    serde_json::json!({
                        "required": ["company_name", "profile"],
                        "properties": {
                            "company_name": string,
                            "profile": {
                                "type": "object",
                                "required": ["company_name"],
                                "properties": { "company_name": string },
                            },
                        },
                    }),
                ),
            ],
        )
    }
}

impl ToSchema for V2Register {}

/// `full_name`: one line with a visible character, at most as long as a given name.
const FULL_NAME: Text = Text::new(Kind::NonBlank, 1, 100);
/// `company_name`: as the profile's.
const COMPANY_NAME: Text = Text::new(Kind::Line, 0, 200);

fn canonical(v2: V2Register) -> Result<RegisterRequest, AppError> {
    // Every field given is checked, also those another one overrides.
    let mut errors = Vec::new();
    if let Some(Err(e)) = v2.full_name.as_deref().map(|f| FULL_NAME.check(f)) {
        errors.push(FieldError::new("full_name", e));
    }
    for (field, role) in [("user_role", &v2.user_role), ("role", &v2.role)] {
        if let Some(Err(e)) = role.as_deref().map(Role::for_registration) {
            errors.push(FieldError::new(field, e));
        }
    }
    let profile_company = v2
        .profile
        .as_ref()
        .and_then(|p| p.get("company_name"))
        .is_some_and(serde_json::Value::is_string);
    if v2.company_name.is_some() && profile_company {
        errors.push(FieldError::new(
            "company_name",
            "give the company name once: here or as profile.company_name",
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let (first, last) = match (&v2.full_name, v2.first_name, v2.last_name) {
        (_, Some(f), l) => (f, l.unwrap_or_default()),
        (Some(full), None, l) => {
            let full = full.trim();
            let (f, rest) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
            (f.to_owned(), l.unwrap_or_else(|| rest.trim().to_owned()))
        }
        (None, None, _) => {
            return Err(AppError::Validation(vec![FieldError::new(
                "full_name",
                "is required (or first_name)",
            )]))
        }
    };
    let mut profile = v2.profile.unwrap_or_else(|| serde_json::json!({}));
    if let (Some(company), Some(map)) = (v2.company_name, profile.as_object_mut()) {
        map.insert("company_name".into(), company.into());
    }
    Ok(RegisterRequest {
        email: v2.email,
        password: v2.password,
        first_name: first,
        last_name: last,
        role: v2.user_role.or(v2.role),
        profile: Some(profile),
    })
}

/// Same as `POST /api/auth/register`, also accepting `full_name`, `user_role` and `company_name`.
#[utoipa::path(post, path = "/api/auth/v2/register", tag = "auth-compat", request_body = V2Register, responses(
    (status = 201, description = "Registered and logged in", body = TokenResponse),
    (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
async fn v2_register(
    state: State<AppState>,
    meta: RequestMeta,
    browser: FromBrowser,
    AppJson(v2): AppJson<V2Register>,
) -> Result<Response, AppError> {
    let named_full = v2.full_name.is_some() && v2.first_name.is_none();
    let req = canonical(v2)?;
    super::routes::register(state, meta, browser, AppJson(req))
        .await
        .map_err(|e| match e {
            // Report name problems under the field the client sent.
            AppError::Validation(errors) if named_full => AppError::Validation(
                errors
                    .into_iter()
                    .map(|mut f| {
                        if f.field == "first_name" || f.field == "last_name" {
                            f.field = "full_name".into();
                        }
                        f
                    })
                    .collect(),
            ),
            other => other,
        })
}

/// Same as `POST /api/auth/logout`.
#[utoipa::path(post, path = "/api/auth/v2/logout", tag = "auth-compat", security(("bearerAuth" = [])), responses(
    (status = 204, description = "Logged out"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn v2_logout(
    state: State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
) -> Result<Response, AppError> {
    super::routes::logout(state, meta, me).await
}

/// Same as `POST /api/auth/logout-all`.
#[utoipa::path(post, path = "/api/auth/v2/logout-all", tag = "auth-compat", security(("bearerAuth" = [])), responses(
    (status = 204, description = "Every session ended"),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn v2_logout_all(
    state: State<AppState>,
    meta: RequestMeta,
    me: AuthUser,
) -> Result<Response, AppError> {
    super::routes::logout_all(state, meta, me).await
}

/// Same as `GET /api/auth/me`.
#[utoipa::path(get, path = "/api/user/profile", tag = "auth-compat", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The user", body = UserView),
    (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn user_profile(me: AuthUser) -> AppJson<UserView> {
    super::account_routes::me(me).await
}

/// `?email=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    /// The address to check.
    pub email: String,
}

/// Whether an address could register.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailAvailability {
    /// True when the address is valid and not registered.
    pub available: bool,
    /// `invalid_format` or `already_exists` when not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Tells whether an email address is valid and free.
#[utoipa::path(get, path = "/api/auth/v2/validate-email", tag = "auth-compat", params(EmailQuery), responses(
    (status = 200, description = "Availability", body = EmailAvailability)))]
async fn validate_email(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<EmailQuery>,
) -> Result<AppJson<EmailAvailability>, AppError> {
    let Ok(email) = Email::parse(&q.email) else {
        return Ok(AppJson(EmailAvailability {
            available: false,
            reason: Some("invalid_format"),
        }));
    };
    let taken = users::email_exists(state.db.pool(), &email).await?;
    Ok(AppJson(EmailAvailability {
        available: !taken,
        reason: taken.then_some("already_exists"),
    }))
}

/// `{password}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordCandidate {
    /// The candidate password.
    pub password: String,
}

/// Rates a candidate password against the policy registration applies.
#[utoipa::path(post, path = "/api/auth/v2/validate-password", tag = "auth-compat", request_body = PasswordCandidate, responses(
    (status = 200, description = "The assessment", body = Assessment)))]
async fn validate_password(
    AppJson(req): AppJson<PasswordCandidate>,
) -> Result<AppJson<Assessment>, AppError> {
    // zxcvbn takes milliseconds on long inputs: off the async workers, like password hashing.
    let assessment = tokio::task::spawn_blocking(move || password::assess(&req.password, &[]))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(AppJson(assessment))
}
