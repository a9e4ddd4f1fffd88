//! The HTTP API of the unified attributes service, as a library: [`Application::build`]
//! prepares everything from [`Settings`] (database, migrations, guardrails, listener) and
//! [`Application::run_until_stopped`] serves. The binary only loads settings and calls these.

pub mod auth;
pub mod error;
pub mod routes;
pub mod settings;
pub mod telemetry;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use flags::{Flags, GuardrailViolation, Phase};
use secrecy::SecretString;
use storage::Storage;
use storage::demo::Dataset;
use tracing_actix_web::TracingLogger;

use crate::error::{ApiError, json_error};
pub use crate::settings::Settings;

/// Largest request body accepted (a full replacement of one entity's values).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Listings in the demo dataset loaded on a fresh machine.
const DEMO_LISTINGS: usize = 500;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub storage: Storage,
    pub flags: Flags,
    pub writer_tokens: Vec<SecretString>,
    pub admin_tokens: Vec<SecretString>,
}

/// Why the service refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
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
}

pub struct Application {
    port: u16,
    phase: Phase,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects and migrates the database, seeds the demo data where configured, refuses
    /// unsafe flags, and binds the listener (port 0 picks a free one).
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let flags = settings.flags.parse()?;
        let url = settings.database.url();
        let storage_error = |source| StartupError::Storage {
            url: redact(&url),
            source,
        };
        let storage = Storage::connect(&url, settings.database.max_connections)
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
        let state = storage.migration_state().await.map_err(storage_error)?;
        let phase = flags.check(&state)?;

        let listener =
            TcpListener::bind(&settings.server.bind).map_err(|source| StartupError::Bind {
                bind: settings.server.bind.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                bind: settings.server.bind.clone(),
                source,
            })?
            .port();
        let state = web::Data::new(AppState {
            storage,
            flags,
            writer_tokens: settings.auth.writer_tokens(),
            admin_tokens: settings.auth.admin_tokens(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_BODY_BYTES)
                        .error_handler(|err, _| json_error(err, MAX_BODY_BYTES).into()),
                )
                .configure(routes_config)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
                }))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            bind: settings.server.bind.clone(),
            source,
        })?;
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        tracing::info!(address = %format!("http://{}:{port}", host(&settings.server.bind)), ?phase, "listening");
        Ok(Self {
            port,
            phase,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Serves until the process is told to stop (SIGTERM/SIGINT drain in-flight requests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Every route of the service; a path with a route but the wrong method answers 405.
fn routes_config(config: &mut web::ServiceConfig) {
    let method_not_allowed =
        || web::to(|| async { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed) });
    config
        .service(
            web::resource("/health/live")
                .route(web::get().to(routes::health::live))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/health/ready")
                .route(web::get().to(routes::health::ready))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/api/v2/marketplace/categories/{id}/attributes")
                .route(web::get().to(routes::categories::attributes))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/api/v2/marketplace/listings/{id}/attributes")
                .route(web::get().to(routes::values::get_listing))
                .route(web::put().to(routes::values::put_listing))
                .default_service(method_not_allowed()),
        );
}

fn host(bind: &str) -> &str {
    bind.rsplit_once(':').map_or(bind, |(host, _)| host)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
