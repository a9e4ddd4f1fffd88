//! The route table: the public and admin scopes, their middleware, and each resource's
//! template and `Allow` list.

use std::collections::BTreeMap;
use std::sync::Mutex;

use actix_web::middleware::from_fn;
use actix_web::{App, web};
use domain::EntityKind;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, json_error};

use crate::*;

/// The route template of a resource, kept in its app data so that metrics label requests
/// without matching the path a second time.
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// Every resource the route table registered in this process: its template and the methods
/// its `Allow` header lists. The route table is the one place a route is written; a test holds
/// `/openapi.json` to it.
static REGISTERED: Mutex<BTreeMap<&'static str, &'static str>> = Mutex::new(BTreeMap::new());

/// The routes registered so far (once an application is built, all of them), by template.
pub fn registered_routes() -> BTreeMap<&'static str, &'static str> {
    REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A resource at `scope` + `path` whose routes answer the methods in `allow` (as the `Allow`
/// header lists them); any other method is 405 with that header.
fn resource(scope: &'static str, path: &'static str, allow: &'static str) -> actix_web::Resource {
    let mut registered = REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let full = format!("{scope}{path}");
    // Each worker builds the table: a template is leaked once, the first time.
    let template: &'static str = match registered.get_key_value(full.as_str()) {
        Some((template, _)) => template,
        None => Box::leak(full.into_boxed_str()),
    };
    registered.insert(template, allow);
    drop(registered);
    web::resource(path)
        .app_data(RouteTemplate(template))
        .default_service(web::to(move || async move {
            Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allow })
        }))
}

/// One worker's application: request metrics and the root span around the listener's routes.
pub(crate) fn app(
    state: AppState,
    listener: Listener,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        // Connections, metrics, shedding, cohorts, the body's deadline, the URL guard.
        .wrap(from_fn(admission::guard))
        .wrap(TracingLogger::<telemetry::RequestSpan>::new())
        // Outermost: the id is known to the log span, every middleware's answer and the body
        // of every error.
        .wrap(from_fn(request_id::assign))
        .app_data(web::Data::new(state))
        .configure(move |config| routes_config(config, listener))
}

/// Which routes a listener serves: the public ones (reads, value writes, health, docs) and/or
/// the internal ones (`/metrics`, the admin API).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listener {
    pub(crate) public: bool,
    pub(crate) internal: bool,
}

/// The routes of one listener, with the error contract for bodies, queries and unknown paths.
/// Routes are grouped under static prefixes so that routing rejects most patterns by prefix
/// before trying any dynamic segment.
fn routes_config(config: &mut web::ServiceConfig, listener: Listener) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|err, _| json_error(err, MAX_BODY_BYTES).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::InvalidQuery(err.to_string()).into()),
        )
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
        }));
    if listener.public {
        public_routes(config);
    }
    if listener.internal {
        admin_routes(config);
        config.service(resource("", "/metrics", "GET").route(web::get().to(metrics::scrape)));
        // The migration console, read only, beside the admin API it reads.
        use routes::console;
        config
            .service(resource("", "/console", "GET").route(web::get().to(console::page)))
            .service(
                resource("", "/console/console.js", "GET").route(web::get().to(console::script)),
            )
            .service(
                resource("", "/console/console.css", "GET").route(web::get().to(console::style)),
            );
    }
}

fn public_routes(config: &mut web::ServiceConfig) {
    use routes::{attributes, categories, health, v1, values};
    const MARKETPLACE: &str = "/api/v2/marketplace";
    let entity_values = |path: &'static str, kind: EntityKind| {
        resource(MARKETPLACE, path, "GET, PUT, POST, PATCH")
            .app_data(web::Data::new(kind))
            .route(web::get().to(values::get))
            .route(web::put().to(values::put))
            .route(web::post().to(values::post))
            .route(web::patch().to(values::patch))
    };
    config.service(
        web::scope(MARKETPLACE)
            .service(entity_values(
                "/listings/{id}/attributes",
                EntityKind::Listing,
            ))
            .service(
                resource(MARKETPLACE, "/categories/{id}/attributes", "GET")
                    .route(web::get().to(categories::attributes)),
            )
            .service(
                resource(MARKETPLACE, "/listings/attributes", "GET")
                    .route(web::get().to(values::batch)),
            )
            .service(entity_values(
                "/products/{id}/attributes",
                EntityKind::Product,
            ))
            .service(entity_values(
                "/variants/{id}/attributes",
                EntityKind::ProductVariant,
            ))
            .service(
                resource(MARKETPLACE, "/categories/{id}/attributes/detailed", "GET")
                    .route(web::get().to(categories::detailed)),
            )
            .service(
                resource(MARKETPLACE, "/categories/{id}/variant-attributes", "GET")
                    .route(web::get().to(categories::variant_attributes)),
            )
            .service(
                resource(MARKETPLACE, "/categories/{id}/attribute-ranges", "GET")
                    .route(web::get().to(categories::ranges)),
            ),
    );
    const ATTRIBUTES: &str = "/api/v2/attributes";
    config.service(
        web::scope(ATTRIBUTES)
            .service(resource(ATTRIBUTES, "", "GET").route(web::get().to(attributes::list)))
            .service(
                resource(ATTRIBUTES, "/{id_or_code}", "GET").route(web::get().to(attributes::one)),
            ),
    );
    const V1: &str = "/api/v1/marketplace";
    config.service(
        web::scope(V1)
            .service(
                resource(V1, "/categories/{id}/attributes", "GET")
                    .route(web::get().to(v1::attributes)),
            )
            .service(
                resource(V1, "/categories/{id}/attribute-ranges", "GET")
                    .route(web::get().to(v1::ranges)),
            )
            .service(
                resource(V1, "/categories/{slug}/variant-attributes", "GET")
                    .route(web::get().to(v1::category_variant_attributes)),
            )
            .service(
                resource(V1, "/product-variant-attributes", "GET")
                    .route(web::get().to(v1::product_variant_attributes)),
            )
            .service(
                resource(V1, "/listings/{id}/attributes", "GET")
                    .route(web::get().to(v1::listing_values)),
            ),
    );
    config
        .service(resource("", "/health/live", "GET").route(web::get().to(health::live)))
        .service(resource("", "/health/ready", "GET").route(web::get().to(health::ready)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::ApiDoc::openapi()));
}

fn admin_routes(config: &mut web::ServiceConfig) {
    use routes::{admin, migration, quarantine};
    const ADMIN: &str = "/api/v2/admin";
    config.service(
        web::scope(ADMIN)
            .service(
                resource(ADMIN, "/attributes", "POST")
                    .route(web::post().to(admin::create_attribute)),
            )
            // Static paths before `/attributes/{id}`, which would match them too.
            .service(
                resource(ADMIN, "/attributes/feature-status", "GET, PUT")
                    .route(web::get().to(migration::feature_status))
                    .route(web::put().to(migration::change_flags)),
            )
            .service(
                resource(ADMIN, "/changes", "GET").route(web::get().to(routes::changes::changes)),
            )
            .service(
                resource(ADMIN, "/operations/{operation}/throttle", "GET, PUT")
                    .route(web::get().to(routes::throttle::show))
                    .route(web::put().to(routes::throttle::change)),
            )
            .service(
                resource(ADMIN, "/attributes/shadow-diffs", "GET")
                    .route(web::get().to(migration::shadow_diffs)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine", "GET")
                    .route(web::get().to(migration::quarantine)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/aliases", "POST")
                    .route(web::post().to(quarantine::add_alias)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/options", "POST")
                    .route(web::post().to(quarantine::add_option)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/moves", "POST")
                    .route(web::post().to(quarantine::move_values)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/acceptances", "POST")
                    .route(web::post().to(quarantine::accept)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/acceptances/undo", "POST")
                    .route(web::post().to(quarantine::unaccept)),
            )
            .service(
                resource(
                    ADMIN,
                    "/attributes/quarantine/resolutions/{id}/undo",
                    "POST",
                )
                .route(web::post().to(quarantine::undo)),
            )
            .service(
                resource(ADMIN, "/attributes/quarantine/resolutions", "GET")
                    .route(web::get().to(quarantine::resolutions)),
            )
            .service(
                resource(ADMIN, "/attributes/migration-status", "GET")
                    .route(web::get().to(migration::migration_status)),
            )
            .service(
                resource(ADMIN, "/attributes/status", "GET")
                    .route(web::get().to(migration::status_document)),
            )
            .service(
                resource(ADMIN, "/attributes/{id}", "PUT, DELETE")
                    .route(web::put().to(admin::update_attribute))
                    .route(web::delete().to(admin::delete_attribute)),
            )
            .service(
                resource(ADMIN, "/categories/{id}/attributes", "POST")
                    .route(web::post().to(admin::create_binding)),
            )
            .service(
                resource(
                    ADMIN,
                    "/categories/{id}/attributes/{attribute_id}",
                    "PUT, DELETE",
                )
                .route(web::put().to(admin::update_binding))
                .route(web::delete().to(admin::delete_binding)),
            ),
    );
}
