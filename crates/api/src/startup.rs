//! Start and stop: `Application::build` (connect, migrate, seed the demo into an empty default
//! database, check the flags, bind the listeners) and `run_until_stopped`, the workers' own
//! storage, and the invalidation listener.

use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use cache::AttributeCaches;
use flags::{GuardrailViolation, Phase};
use storage::demo::Dataset;
use storage::flag_store::EnvironmentFlags;
use storage::{ListenerEvent, Storage};

use crate::metrics::Metrics;

use crate::routing::{Listener, app};
use crate::*;

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
