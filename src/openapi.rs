//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::{
    openapi::{
        content::ContentBuilder,
        header::HeaderBuilder,
        response::{Response, ResponseBuilder},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ObjectBuilder, Ref, RefOr, Type,
    },
    OpenApi,
};

use crate::{
    edge::policy::{RouteClass, RouteTable},
    error::{FieldError, PlanLimit, PlanLimitProblem, Problem, PROBLEM_JSON},
};

/// The document's fixed parts; paths are added by each domain's router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Autorisen API",
        description = "The CapeControl platform API. Every error is an RFC 9457 \
                       `application/problem+json` document carrying the request id."
    ),
    components(schemas(Problem, FieldError, PlanLimitProblem, PlanLimit)),
    tags(
        (name = "health", description = "Probes, health and status"),
        (name = "admin", description = "Admin only: users, audit trail, rate limits, bans and jobs")
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares: the bearer security scheme, and the answers the shared
/// layers give besides the handler's own, so that every status a route can answer is documented
/// (there is no catch-all `default` response):
/// - a JSON body: 400 (malformed), 413 (too large), 415 (not JSON), 422 (invalid fields);
/// - query parameters: 422 (unparsable or out of range);
/// - a bearer token: 401;
/// - every route the edge guards (all but the exempt probes and docs): 403 for a banned client,
///   429 with `Retry-After` over a rate limit, 503 when shedding load, and the `RateLimit` and
///   `RateLimit-Policy` headers on every answer of a rate-limited route.
pub fn finish(mut api: utoipa::openapi::OpenApi, routes: &RouteTable) -> utoipa::openapi::OpenApi {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearerAuth",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    for (path, item) in api.paths.paths.iter_mut() {
        let class = routes.class_of(path);
        let guarded = class != Some(RouteClass::Exempt);
        let limited = guarded && class != Some(RouteClass::Webhook);
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem(description)));
            };
            if op.request_body.is_some() {
                add("400", "The body is not valid JSON");
                add("413", "The body is larger than this route accepts");
                add("415", "The body is not `application/json`");
                add("422", "Invalid fields, every one listed in `errors`");
            }
            let query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
            if query {
                add("422", "A query parameter is invalid (named in `errors`)");
            }
            if op.security.is_some() {
                add("401", "No, an invalid or an expired bearer token");
            }
            if guarded {
                add(
                    "403",
                    "The client address is banned, or the caller may not do this",
                );
                add(
                    "503",
                    "The service is shedding load or cannot reach its storage; retry later",
                );
            }
            if limited {
                add("429", "Over a rate limit; `Retry-After` says when to retry");
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        rate_limit_headers(response, status == "429");
                    }
                }
            } else if guarded {
                // A webhook has no rate limit, but the per-client in-flight cap still applies.
                add(
                    "429",
                    "Too many of this client's requests are in progress; `Retry-After` says when \
                     to retry",
                );
                if let Some(RefOr::T(response)) = responses.get_mut("429") {
                    retry_after_header(response);
                }
            }
        }
    }
    api
}

/// An answer with a problem document.
fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
                .build(),
        )
        .build()
}

/// Documents the rate-limit headers of a guarded route's answer (`Retry-After` is certain on 429).
fn rate_limit_headers(response: &mut Response, refused: bool) {
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    response.headers.insert(
        "RateLimit-Policy".into(),
        HeaderBuilder::new()
            .schema(string())
            .description(Some(
                "The quotas that apply, as `\"name\";q=LIMIT;w=SECONDS` items \
                 (draft-ietf-httpapi-ratelimit-headers)",
            ))
            .build(),
    );
    response.headers.insert(
        "RateLimit".into(),
        HeaderBuilder::new()
            .schema(string())
            .description(Some(
                "The most constrained quota's state, as `\"name\";r=REMAINING;t=SECONDS`",
            ))
            .build(),
    );
    if refused {
        retry_after_header(response);
    }
}

/// Documents `Retry-After` (seconds) on a refusal.
fn retry_after_header(response: &mut Response) {
    response.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .build(),
            )
            .description(Some("Seconds until a retry can succeed"))
            .build(),
    );
}
