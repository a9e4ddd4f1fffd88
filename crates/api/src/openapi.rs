//! The OpenAPI document, generated from the handlers' annotations, and the docs page (Swagger
//! UI, bundled into the binary: it works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, attributes, categories, v1, values};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "unified-attributes",
        description = "Product attributes of the marketplace, served from the legacy tables, the unified model, or both, as the migration flags say."
    ),
    paths(
        categories::attributes,
        categories::detailed,
        categories::variant_attributes,
        categories::ranges,
        values::get,
        values::put,
        values::post,
        values::patch,
        values::batch,
        attributes::list,
        attributes::one,
        admin::create_attribute,
        admin::update_attribute,
        admin::delete_attribute,
        admin::create_binding,
        admin::update_binding,
        admin::delete_binding,
        crate::routes::migration::feature_status,
        crate::routes::migration::change_flags,
        crate::routes::changes::changes,
        crate::routes::throttle::show,
        crate::routes::throttle::change,
        crate::routes::migration::migration_status,
        crate::routes::migration::status_document,
        crate::routes::migration::shadow_diffs,
        crate::routes::migration::quarantine,
        crate::routes::quarantine::add_alias,
        crate::routes::quarantine::add_option,
        crate::routes::quarantine::move_values,
        crate::routes::quarantine::accept,
        crate::routes::quarantine::unaccept,
        crate::routes::quarantine::undo,
        crate::routes::quarantine::resolutions,
        v1::attributes,
        v1::ranges,
        v1::product_variant_attributes,
        v1::category_variant_attributes,
        v1::listing_values,
    ),
    components(schemas(crate::error::ErrorView, crate::error::FieldErrorView)),
    modifiers(&EntityRoutes, &BearerTokens, &RefusedUrls),
    tags(
        (name = "categories", description = "Effective schemas of categories"),
        (name = "values", description = "Attribute values of listings, products and variants"),
        (name = "attributes", description = "The attribute catalog"),
        (name = "admin", description = "Definitions and bindings (admin token)"),
        (name = "v1", description = "Legacy read paths the existing frontend calls"),
    )
)]
pub struct ApiDoc;

/// Products and variants answer the listing's value routes with the same handlers (the route
/// table registers one resource per kind): their paths are the listing's, documented once.
struct EntityRoutes;

impl Modify for EntityRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const LISTING: &str = "/api/v2/marketplace/listings/{id}/attributes";
        let Some(listing) = openapi.paths.paths.get(LISTING).cloned() else {
            return;
        };
        for (kind, noun) in [("products", "Product"), ("variants", "Variant")] {
            let mut item = listing.clone();
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("patch", &mut item.patch),
            ] {
                let Some(operation) = operation else { continue };
                operation.operation_id = Some(format!("{method}_{}_values", noun.to_lowercase()));
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "id" {
                        parameter.description = Some(format!("{noun} id"));
                    }
                }
            }
            openapi.paths.paths.insert(
                format!("/api/v2/marketplace/{kind}/{{id}}/attributes"),
                item,
            );
        }
    }
}

struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["writer_token", "admin_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
        // The marketplace's user tokens (RS256 JWT); browsers send it as the `access_token`
        // cookie instead. An `admin` role opens the admin routes too.
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route answers 400 `errors.invalidUrl` to a URL holding a NUL character (`url_guard`,
/// before any handler): documented on every operation, where its own annotations do not already
/// document a 400; and every write answers 429 beyond its client's bound (`shedding`).
struct RefusedUrls;

impl Modify for RefusedUrls {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refused = ResponseBuilder::new()
            .description("Invalid request: a parameter is invalid, or the URL holds a NUL character (errors.invalidUrl)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorView")))
                    .build(),
            )
            .build();
        let too_many = ResponseBuilder::new()
            .description("This client has too many writes in flight; retry after the Retry-After seconds (errors.tooManyRequests)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorView")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("400".to_owned())
                    .or_insert_with(|| refused.clone().into());
            }
            // Writes are bounded per client (`shedding`): 429 before the body is read.
            for operation in [&mut item.put, &mut item.post, &mut item.patch]
                .into_iter()
                .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert_with(|| too_many.clone().into());
            }
        }
    }
}
