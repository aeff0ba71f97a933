//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::{
    openapi::{
        content::ContentBuilder,
        response::ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        Ref, RefOr,
    },
    OpenApi,
};

use crate::error::{FieldError, Problem, PROBLEM_JSON};

/// The document's fixed parts; paths are added by each domain's router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Autorisen API",
        description = "The CapeControl platform API. Every error is an RFC 9457 \
                       `application/problem+json` document carrying the request id."
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "health", description = "Probes, health and status"),
        (name = "admin", description = "Admin only: users, audit trail, rate limits, bans and jobs")
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares: the bearer security scheme, and a `default` problem
/// response so that each operation documents its error shape.
pub fn finish(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
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
    let problem = ResponseBuilder::new()
        .description("An error, as an RFC 9457 problem document")
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
                .build(),
        )
        .build();
    components
        .responses
        .insert("Problem".into(), RefOr::T(problem));
    for item in api.paths.paths.values_mut() {
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
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Problem")));
        }
    }
    api
}
