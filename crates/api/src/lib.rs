//! The HTTP API of the unified attributes service, as a library: [`Application::build`]
//! prepares everything from [`Settings`] (database, migrations, guardrails, caches, metrics,
//! listeners) and [`Application::run_until_stopped`] serves. The binary only loads settings
//! and calls these.

pub mod auth;
mod body_deadline;
mod capture;
pub mod cohort;
pub mod connections;
pub mod error;
pub mod http_cache;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod settings;
pub mod shadow;
pub mod shedding;
pub mod telemetry;
mod url_guard;
pub mod views;

use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use cache::AttributeCaches;
use domain::{Attribute, EntityKind, Invalidation};
use flags::{Flags, GuardrailViolation, Phase};
use secrecy::SecretString;
use storage::demo::Dataset;
use storage::flag_store::EnvironmentFlags;
use storage::{ListenerEvent, ReadRoute, Storage};
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, json_error};
use crate::metrics::Metrics;
pub use crate::settings::Settings;

/// Largest request body accepted (a full replacement of one entity's values).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Listings in the demo dataset loaded on a fresh machine.
const DEMO_LISTINGS: usize = 500;

/// What the handlers of one worker thread use. The caches, metrics and tokens are shared by
/// every worker; the storage is the worker's own pool, so its queries stay on its thread.
#[derive(Debug, Clone)]
pub struct AppState {
    pub storage: Storage,
    /// The flags in force; runtime changes replace them without a restart.
    pub flags_in_force: Arc<RwLock<FlagsInForce>>,
    pub caches: AttributeCaches,
    pub metrics: Arc<Metrics>,
    pub writer_tokens: Arc<[SecretString]>,
    pub admin_tokens: Arc<[SecretString]>,
    /// Verifies the marketplace's user tokens; `None` when no key is configured.
    pub jwt: auth::SharedVerifier,
    /// This worker's requests in flight: a permit each, none left means shed.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// This worker's requests, and writes, in flight per client (see `shedding`).
    pub requests_per_client: Arc<shedding::PerClient>,
    pub writes_per_client: Arc<shedding::PerClient>,
    /// The last `X-Forwarded-For` entry is an anonymous client's address.
    pub trust_forwarded_for: bool,
    /// How long a client has to send a request's body (then 408).
    pub body_timeout: std::time::Duration,
    /// Every worker's storage, for the pool gauges.
    pub pools: Arc<std::sync::Mutex<Vec<Storage>>>,
    /// Recent disagreements found by shadow reads.
    pub shadow_diffs: Arc<shadow::ShadowDiffs>,
    /// The public listener's open connections.
    pub connections: Arc<connections::Connections>,
    /// The database as the status names it (never a password).
    pub database: Arc<str>,
    /// How long `archive` waits after the switch to the unified phase (for the status).
    pub archive_soak: std::time::Duration,
}

/// The flags in force, where they came from, and the phase they mean.
#[derive(Debug, Clone, Copy)]
pub struct FlagsInForce {
    pub flags: Flags,
    /// The flags from the environment and settings, which runtime changes override.
    pub configured: Flags,
    pub phase: Phase,
    /// `configured` until the first runtime change, then `runtime`.
    pub source: &'static str,
}

impl AppState {
    /// The flags in force for this request.
    pub fn flags(&self) -> Flags {
        self.flags_in_force
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().flags, |f| f.flags)
    }

    pub fn flags_in_force(&self) -> FlagsInForce {
        *self
            .flags_in_force
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts new flags in force (a runtime change here or in another replica).
    pub fn set_flags(&self, flags: Flags, phase: Phase) {
        let mut in_force = self
            .flags_in_force
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Fallback decides what a unified read answers (an entity with quarantined values
        // answers from legacy): cached answers made under the other setting are not reused.
        if in_force.flags.fallback != flags.fallback {
            self.caches.flush();
        }
        *in_force = FlagsInForce {
            flags,
            phase,
            source: "runtime",
            ..*in_force
        };
        self.metrics.set_flags(&flags, phase);
    }

    /// Reloads the stored runtime flags (after a notification or a lost listener).
    pub async fn reload_flags(&self) {
        let stored = self.storage.stored_flags().await;
        let state = self.storage.migration_state().await;
        match (stored, state) {
            (Ok(Some(stored)), Ok(state)) => match stored.flags.check(&state) {
                Ok(phase) => self.set_flags(stored.flags, phase),
                Err(violation) => tracing::error!(
                    rule = violation.rule(),
                    "stored flags break a guardrail; keeping the flags in force"
                ),
            },
            // Configured flags: only the phase can change (archive, restore).
            (Ok(None), Ok(state)) => {
                let in_force = self.flags_in_force();
                if let Ok(phase) = in_force.flags.check(&state) {
                    self.flags_in_force
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .phase = phase;
                    self.metrics.set_flags(&in_force.flags, phase);
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %storage::Logged(&err), "cannot reload the runtime flags")
            }
        }
    }

    /// Drops what a committed write made stale in this process. (Other replicas hear it
    /// through the database.)
    pub async fn invalidate(&self, invalidations: &[Invalidation]) {
        for invalidation in invalidations {
            self.caches.apply(invalidation).await;
        }
    }

    /// The attribute catalog of the routed store, cached whole.
    /// Legacy stores some options in other spellings (`Automatic`, `автомат`): values read
    /// from legacy are given the option value they certainly mean, as the backfill stores it,
    /// so both stores answer alike (and shadow reads compare like with like).
    pub async fn canonical_legacy_values(
        &self,
        values: &mut domain::EntityValues,
    ) -> Result<(), ApiError> {
        use domain::Value;
        let select_like = |value: &Value| {
            matches!(
                value,
                Value::Select(_) | Value::Multiselect(_) | Value::Color(_) | Value::Size(_)
            )
        };
        if !values.values().any(|typed| select_like(&typed.value)) {
            return Ok(());
        }
        let catalog = self
            .catalog(ReadRoute::new(flags::Store::Legacy, false))
            .await?;
        for (code, typed) in values.iter_mut() {
            // The kind first: the catalog is searched only for the values that have options.
            if select_like(&typed.value)
                && let Some(attribute) = catalog.iter().find(|a| &a.code == code)
            {
                domain::canonical_spellings(&attribute.options, &mut typed.value);
            }
        }
        Ok(())
    }

    pub async fn catalog(&self, route: ReadRoute) -> Result<Arc<Vec<Attribute>>, ApiError> {
        let (catalog, _) = self
            .caches
            .catalog(route.store, || async {
                let read = self.storage.catalog(route).await?;
                Ok::<_, ApiError>(Arc::new(read.data))
            })
            .await
            .map_err(ApiError::Shared)?;
        Ok(catalog)
    }
}

/// Why the service refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("user authentication: {0}")]
    Auth(String),
    #[error("invalid flag value: {0}")]
    Flag(#[from] flags::FlagError),
    #[error("unsafe flag combination ({rule}): {violation}", rule = .0.rule(), violation = .0)]
    Guardrail(#[from] GuardrailViolation),
    #[error("database {url}: {source}")]
    Storage {
        url: String,
        source: storage::StorageError,
    },
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("cannot handle stop signals: {0}")]
    Signals(std::io::Error),
}

pub struct Application {
    port: u16,
    internal_port: Option<u16>,
    phase: Phase,
    server: Server,
    internal_server: Option<ServerHandle>,
    stop_signal: StopSignal,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("internal_port", &self.internal_port)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

fn bind_error(bind: &str) -> impl FnOnce(std::io::Error) -> StartupError {
    let bind = bind.to_owned();
    move |source| StartupError::Bind { bind, source }
}

impl Application {
    /// Connects and migrates the database, seeds the demo data where configured, refuses
    /// unsafe flags, and binds the listeners (port 0 picks a free one).
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let flags = settings.flags.parse()?;
        let url = settings.database.url();
        let storage_error = |source| StartupError::Storage {
            url: storage::redact_url(&url),
            source,
        };
        let storage = Storage::connect_with(
            &url,
            settings.database.pool(),
            &settings.database.topology(),
        )
        .await
        .map_err(storage_error)?;
        if settings.database.migrate_on_start {
            storage.migrate().await.map_err(storage_error)?;
        }
        let seed_demo = settings
            .demo
            .seed_on_first_start
            .unwrap_or(settings.database.url.is_none());
        if seed_demo
            && !storage
                .has_legacy_definitions()
                .await
                .map_err(storage_error)?
        {
            let listings = settings.demo.listings.unwrap_or(DEMO_LISTINGS);
            tracing::info!(
                listings,
                "empty database: loading the demo marketplace in legacy form"
            );
            storage
                .seed_legacy(&Dataset::marketplace(listings, 1))
                .await
                .map_err(storage_error)?;
        }
        let configured = flags;
        // A runtime change outlives restarts: every replica serves the same flags. A change of
        // the environment since the last start (`kubectl set env …`) is one too.
        match storage
            .adopt_environment(&settings.flags.raw(), configured, "environment")
            .await
            .map_err(storage_error)?
        {
            EnvironmentFlags::Applied(change) => tracing::warn!(
                old = ?change.old, new = ?change.new, phase = %change.new_phase,
                "the environment's flags changed since the last start: applied as a runtime change"
            ),
            EnvironmentFlags::Refused(violation) => tracing::error!(
                rule = violation.rule(), %violation,
                "the environment's flags changed since the last start, but the guardrails refuse them: the stored flags stay (change them with `flags --set`)"
            ),
            EnvironmentFlags::InForce | EnvironmentFlags::Unchanged => {}
        }
        let stored = storage.stored_flags().await.map_err(storage_error)?;
        let (flags, source) = match &stored {
            Some(stored) => {
                tracing::info!(updated_by = %stored.updated_by, updated_at = %stored.updated_at, "runtime flags override the configured ones");
                (stored.flags, "runtime")
            }
            None => (configured, "configured"),
        };
        let migration_state = storage.migration_state().await.map_err(storage_error)?;
        // Flags from the environment alone are decided at every start; stored ones were
        // decided when they were set.
        let phase = match &stored {
            Some(_) => flags.check(&migration_state)?,
            None => flags.check_change(None, &migration_state)?,
        };
        // Flags from the environment reach the evidence here (runtime changes record their own).
        storage
            .note_write_mode(flags.write_mode())
            .await
            .map_err(storage_error)?;

        let listener =
            TcpListener::bind(&settings.server.bind).map_err(bind_error(&settings.server.bind))?;
        let port = listener
            .local_addr()
            .map_err(bind_error(&settings.server.bind))?
            .port();
        let jwt = auth::JwtVerifier::from_settings(&settings.auth)
            .map_err(StartupError::Auth)?
            .map(Arc::new);
        let metrics = Metrics::new();
        metrics.set_flags(&flags, phase);
        let workers = settings
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let (soft_cap, per_worker_cap) = connections::caps(
            settings.server.max_connections,
            workers,
            u64::from(settings.database.max_connections) * (workers as u64 + 2),
        );
        let url = settings.database.url();
        let database = storage::location::Place::of(&url, &settings.database.schema)
            .map_or_else(|| storage::redact_url(&url), |place| place.to_string());
        let shared = AppState {
            database: database.into(),
            archive_soak: settings.migration.archive_soak(),
            caches: AttributeCaches::new(settings.cache.to_cache_settings()),
            metrics: Arc::new(metrics),
            storage,
            flags_in_force: Arc::new(RwLock::new(FlagsInForce {
                flags,
                configured,
                phase,
                source,
            })),
            writer_tokens: settings.auth.writer_tokens().into(),
            admin_tokens: settings.auth.admin_tokens().into(),
            jwt,
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.server.max_in_flight)),
            requests_per_client: Arc::new(shedding::PerClient::new(
                settings.server.max_in_flight_per_client,
            )),
            writes_per_client: Arc::new(shedding::PerClient::new(
                settings.server.max_writes_in_flight_per_client,
            )),
            trust_forwarded_for: settings.server.trust_forwarded_for,
            body_timeout: std::time::Duration::from_millis(settings.server.request_body_timeout_ms),
            pools: Arc::default(),
            shadow_diffs: Arc::default(),
            connections: connections::Connections::new(soft_cap),
        };
        listen_for_invalidations(&shared).await;
        metrics::refresh_operations(&shared);
        capture::run(&shared);

        // With an internal listener, /metrics and the admin API are served there only.
        let internal = settings.server.internal_bind.is_none();
        let worker_template = shared.clone();
        let pool = settings.database.pool();
        let public_url = url.clone();
        let public = Listener {
            public: true,
            internal,
        };
        let open_connections = Arc::clone(&shared.connections);
        let mut server =
            HttpServer::new(move || app(worker_state(&worker_template, &public_url, pool), public))
                .on_connect(move |connection, data| open_connections.on_connect(connection, data))
                .workers(workers)
                .max_connections(per_worker_cap)
                .listen(listener)
                .map_err(bind_error(&settings.server.bind))?;
        server = server
            .keep_alive(std::time::Duration::from_secs(
                settings.server.keep_alive_seconds,
            ))
            .client_request_timeout(std::time::Duration::from_millis(
                settings.server.request_head_timeout_ms,
            ));
        // The servers are started lazily; the stop signals are ours, handled from before the
        // address is announced, so a SIGTERM at any time after that drains instead of killing.
        let server = server.shutdown_timeout(30).disable_signals().run();

        let mut internal_port = None;
        let mut internal_server = None;
        if let Some(bind) = &settings.server.internal_bind {
            let internal_listener = TcpListener::bind(bind).map_err(bind_error(bind))?;
            internal_port = Some(
                internal_listener
                    .local_addr()
                    .map_err(bind_error(bind))?
                    .port(),
            );
            let worker_template = shared.clone();
            let only_internal = Listener {
                public: false,
                internal: true,
            };
            let internal = HttpServer::new(move || {
                app(worker_state(&worker_template, &url, pool), only_internal)
            })
            .workers(1)
            .listen(internal_listener)
            .map_err(bind_error(bind))?
            .shutdown_timeout(30)
            .disable_signals()
            .run();
            internal_server = Some(internal.handle());
            tokio::spawn(internal);
        }
        let stop_signal = StopSignal::install().map_err(StartupError::Signals)?;
        tracing::info!(address = %format!("http://{}:{port}", host(&settings.server.bind)), ?phase, "listening");
        Ok(Self {
            port,
            internal_port,
            phase,
            server,
            internal_server,
            stop_signal,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the internal listener (`/metrics`, admin API), when one is configured.
    pub fn internal_port(&self) -> Option<u16> {
        self.internal_port
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Serves until the process is told to stop: SIGTERM or SIGINT drains the requests in
    /// flight (up to 30 s), then the internal listener stops, so metrics outlive the drain.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            internal_server,
            mut stop_signal,
            ..
        } = self;
        let public = server.handle();
        tokio::spawn(async move {
            stop_signal.received().await;
            tracing::info!("stop signal received; draining the requests in flight");
            public.stop(true).await;
        });
        let served = server.await;
        if let Some(internal) = internal_server {
            internal.stop(true).await;
        }
        served
    }
}

/// The state of one worker: the shared parts, and a pool of its own that connects lazily on
/// the worker's runtime. (The URL was checked when the service started.)
fn worker_state(shared: &AppState, url: &str, pool: storage::PoolSettings) -> AppState {
    let storage = shared.storage.for_worker(url, pool).unwrap_or_else(|err| {
        tracing::error!(error = %storage::Logged(&err), "worker pool not created; the worker shares the main pool");
        shared.storage.clone()
    });
    if let Ok(mut pools) = shared.pools.lock() {
        pools.push(storage.clone());
    }
    AppState {
        storage,
        // Each worker bounds its own requests, as each has its own pool.
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            shared.in_flight.available_permits(),
        )),
        requests_per_client: Arc::new(shedding::PerClient::new(shared.requests_per_client.limit())),
        writes_per_client: Arc::new(shedding::PerClient::new(shared.writes_per_client.limit())),
        ..shared.clone()
    }
}

/// Applies other replicas' invalidations (PostgreSQL `LISTEN`). While its connection is lost
/// an invalidation may be missed: cached answers are revalidated (and stand in only when the
/// database cannot answer) until it listens again, and then dropped.
async fn listen_for_invalidations(state: &AppState) {
    let mut listener = match state.storage.invalidation_listener().await {
        Ok(Some(listener)) => listener,
        Ok(None) => return,
        Err(err) => {
            tracing::error!(error = %storage::Logged(&err), "cannot listen for other replicas' invalidations; caching only locally");
            return;
        }
    };
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            match listener.next().await {
                Ok(ListenerEvent::Invalidate(invalidations)) => {
                    state.invalidate(&invalidations).await;
                    state.metrics.invalidations_heard(invalidations.len());
                }
                Ok(ListenerEvent::FlagsChanged) => state.reload_flags().await,
                Ok(ListenerEvent::ConnectionLost) => {
                    tracing::warn!(
                        "listener lost its connection; cached answers are revalidated until it is back"
                    );
                    state.metrics.listener_reconnected();
                    state.caches.hold_unconfirmed();
                }
                Ok(ListenerEvent::Resumed) => {
                    tracing::info!(
                        "listener is back; dropping the cache (it may have missed invalidations), reloading the flags"
                    );
                    state.caches.confirm();
                    state.reload_flags().await;
                }
                Err(err) => {
                    if !state.caches.unconfirmed() {
                        tracing::warn!(error = %storage::Logged(&err), "listener failed; cached answers are revalidated until it is back");
                        state.metrics.listener_reconnected();
                    }
                    state.caches.hold_unconfirmed();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// The route template of a resource, kept in its app data so that metrics label requests
/// without matching the path a second time.
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// A resource under `scope` answering `route`; other methods answer 405.
/// A resource at `scope` + `path` whose routes answer the methods in `allow` (as the `Allow`
/// header lists them); any other method is 405 with that header.
fn resource(scope: &'static str, path: &'static str, allow: &'static str) -> actix_web::Resource {
    let template: &'static str = Box::leak(format!("{scope}{path}").into_boxed_str());
    web::resource(path)
        .app_data(RouteTemplate(template))
        .default_service(web::to(move || async move {
            Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allow })
        }))
}

/// One worker's application: request metrics and the root span around the listener's routes.
fn app(
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
        .wrap(from_fn(url_guard::refuse_nul))
        .wrap(from_fn(body_deadline::enforce))
        .wrap(from_fn(cohort::keep))
        .wrap(from_fn(shedding::admit))
        .wrap(from_fn(metrics::track))
        .wrap(from_fn(connections::track))
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
struct Listener {
    public: bool,
    internal: bool,
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

fn host(bind: &str) -> &str {
    bind.rsplit_once(':').map_or(bind, |(host, _)| host)
}

/// SIGTERM (what Kubernetes sends) and SIGINT, listened for from the moment it is installed.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn received(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn received(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
