//! Typed settings, layered: built-in defaults → optional TOML file → `APP__SECTION__KEY`
//! environment variables → the plain variables ops already use (`DATABASE_URL`, the flag
//! variables, the API tokens). Unknown keys and malformed values are errors.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use flags::{Flags, RawFlags, vars};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Used when no database is configured: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://unified-attributes.db";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub flags: FlagSettings,
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub demo: DemoSettings,
    pub cache: CacheConfig,
    #[serde(default)]
    pub migration: MigrationSettings,
}

/// The migration's own pace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationSettings {
    /// How long `archive` waits after the switch to the unified phase, in hours
    /// (`ARCHIVE_SOAK_HOURS`); 0 waits for nothing.
    pub archive_soak_hours: u32,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            archive_soak_hours: storage::soak::DEFAULT_SOAK_HOURS,
        }
    }
}

impl MigrationSettings {
    pub fn archive_soak(&self) -> std::time::Duration {
        self.archive_soak_or(None)
    }

    /// The soak a command's `--soak-hours` asks for, else the setting's.
    pub fn archive_soak_or(&self, hours: Option<u32>) -> std::time::Duration {
        let hours = hours.unwrap_or(self.archive_soak_hours);
        std::time::Duration::from_secs(u64::from(hours) * 3600)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bound of the response cache, in bytes.
    pub max_bytes: u64,
    /// Backstop lifetime of an entry, in seconds; writes drop entries long before.
    pub ttl_seconds: u64,
    /// How long cached answers may stand in while the database cannot answer and
    /// invalidations cannot be heard (RFC 5861's stale-if-error), in seconds.
    pub stale_if_error_seconds: u64,
}

impl CacheConfig {
    pub fn to_cache_settings(&self) -> cache::CacheSettings {
        cache::CacheSettings {
            enabled: self.enabled,
            max_bytes: self.max_bytes,
            ttl: std::time::Duration::from_secs(self.ttl_seconds),
            stale_if_error: std::time::Duration::from_secs(self.stale_if_error_seconds),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port`; port 0 picks a free port (tests).
    pub bind: String,
    pub workers: Option<usize>,
    /// `host:port` of the internal listener: `/metrics` and the admin API move there, off the
    /// public listener, so the network can keep them inside the cluster. Unset: all on `bind`.
    pub internal_bind: Option<String>,
    /// Requests one worker serves at once; beyond, 503 with `Retry-After` at once (probes and
    /// scrapes are never shed).
    pub max_in_flight: usize,
    /// Requests with a body (writes) one client — one `Authorization` value — may have in
    /// flight at once on a worker; beyond, 429 with `Retry-After` at once. A client sending
    /// bodies slowly then holds at most these slots, never the worker's whole bound.
    pub max_writes_in_flight_per_client: usize,
    /// Requests of any kind one client may have in flight at once on a worker; beyond, 429
    /// with `Retry-After` at once, so no one client takes every slot of `max_in_flight`. A
    /// client is its credentials (`Authorization`, else the `access_token` cookie), or its
    /// address when it sends none (0: no bound).
    pub max_in_flight_per_client: usize,
    /// One proxy in front of the service appends the address it saw to `X-Forwarded-For`
    /// (a mesh's sidecar, an ingress): that last entry is the client's address. Off, the
    /// address is the connection's peer (earlier entries are the client's word, never used).
    pub trust_forwarded_for: bool,
    /// Open client connections at most (all workers); 0 derives it from the file limit (half
    /// of what is left after the database's and the process's own). Past 90 % of it, the
    /// longest idle connections are closed for new ones; at it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Seconds an idle keep-alive connection stays open: longer than the mesh's idle timeout
    /// (60 s in `deploy/`), so the proxy closes first and never reuses a closing connection.
    pub keep_alive_seconds: u64,
    /// Milliseconds a client has to send a request's head; slower clients are cut off (408).
    pub request_head_timeout_ms: u64,
    /// Milliseconds a client has, after the head, to send the body; slower ones get 408.
    pub request_body_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`; secret because it may hold a password.
    pub url: Option<SecretString>,
    pub max_connections: u32,
    /// Apply pending schema migrations when the service starts.
    pub migrate_on_start: bool,
    /// A statement running longer is cancelled (PostgreSQL `statement_timeout`).
    pub statement_timeout_ms: u64,
    /// The longest wait for a lock (PostgreSQL `lock_timeout`, SQLite's busy timeout).
    pub lock_timeout_ms: u64,
    /// A transaction idle this long is ended (PostgreSQL `idle_in_transaction_session_timeout`).
    pub idle_in_transaction_timeout_ms: u64,
    /// A direct session connection to the primary (`DATABASE_SESSION_URL`) for `LISTEN`,
    /// migrations and the replica watch, when `url` passes a transaction pooler.
    pub session_url: Option<SecretString>,
    /// Streaming read replicas (`DATABASE_READ_URL`, comma-separated) for uncached reads.
    pub read_urls: Option<SecretString>,
    /// A replica lagging more than this is taken out of reads (at most 10,000).
    pub replica_max_lag_ms: u64,
    /// `url` (and the replicas') go through a transaction-mode pooler such as PgBouncer.
    pub transaction_pooler: bool,
    /// PostgreSQL: the schema of this service's tables (`DATABASE_SCHEMA`); the marketplace's
    /// stay in `public`, where its own `unified_*` tables may already be.
    pub schema: String,
}

impl DatabaseSettings {
    /// The pool size and time limits every connection carries.
    pub fn pool(&self) -> storage::PoolSettings {
        let ms = std::time::Duration::from_millis;
        storage::PoolSettings {
            max_connections: self.max_connections,
            statement_timeout: ms(self.statement_timeout_ms),
            lock_timeout: ms(self.lock_timeout_ms),
            idle_in_transaction_timeout: ms(self.idle_in_transaction_timeout_ms),
        }
    }

    /// The session URL, replicas and pooler, as the storage takes them.
    pub fn topology(&self) -> storage::Topology {
        storage::Topology {
            session_url: self
                .session_url
                .as_ref()
                .map(|url| url.expose_secret().to_owned()),
            read_urls: self.read_urls.as_ref().map_or_else(Vec::new, |urls| {
                urls.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            replica_max_lag: std::time::Duration::from_millis(self.replica_max_lag_ms),
            transaction_pooler: self.transaction_pooler,
            schema: Some(self.schema.clone()),
        }
    }

    pub fn url(&self) -> String {
        self.url.as_ref().map_or_else(
            || DEFAULT_DATABASE_URL.to_owned(),
            |u| u.expose_secret().to_owned(),
        )
    }
}

/// Who may write. Service tokens (bearer, comma-separated to allow rotation) for backend calls;
/// the marketplace's users with the RS256 JWTs its auth service signs, verified with its public
/// key (PEM, inline or from a file) and the expected issuer and audience. Nothing configured:
/// writes answer 401.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub writer_tokens: Option<SecretString>,
    pub admin_tokens: Option<SecretString>,
    /// The auth service's RSA public key, PEM (`JWT_PUBLIC_KEY`).
    pub jwt_public_key: Option<String>,
    /// A file holding it (`JWT_PUBLIC_KEY_FILE`), e.g. a mounted secret.
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// The `iss` a token must carry (`JWT_ISSUER`); required with a key.
    pub jwt_issuer: Option<String>,
    /// The `aud` a token must carry (`JWT_AUDIENCE`); required with a key.
    pub jwt_audience: Option<String>,
}

impl AuthSettings {
    pub fn writer_tokens(&self) -> Vec<SecretString> {
        split_tokens(self.writer_tokens.as_ref())
    }

    pub fn admin_tokens(&self) -> Vec<SecretString> {
        split_tokens(self.admin_tokens.as_ref())
    }
}

fn split_tokens(raw: Option<&SecretString>) -> Vec<SecretString> {
    raw.map(|r| {
        r.expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// The flag values as text; parsed strictly by the flags crate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSettings {
    pub use_unified_attributes: Option<String>,
    pub unified_attributes_percent: Option<String>,
    pub unified_attributes_fallback: Option<String>,
    pub dual_write_attributes: Option<String>,
    pub unified_attributes_shadow_percent: Option<String>,
}

impl FlagSettings {
    pub fn parse(&self) -> Result<Flags, flags::FlagError> {
        self.raw().parse()
    }

    /// The variables as set (`None` where unset).
    pub fn raw(&self) -> RawFlags {
        RawFlags {
            use_unified: self.use_unified_attributes.clone(),
            unified_percent: self.unified_attributes_percent.clone(),
            fallback: self.unified_attributes_fallback.clone(),
            dual_write: self.dual_write_attributes.clone(),
            shadow_percent: self.unified_attributes_shadow_percent.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` overrides them.
    pub filter: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// Load the demo dataset into an empty database on start. Defaults to on only for the
    /// built-in SQLite database, so a fresh machine serves data with no set-up.
    pub seed_on_first_start: Option<bool>,
    pub listings: Option<usize>,
}

impl Settings {
    /// Loads settings from the layers described above; `file` is an optional TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Like [`Settings::load`], with the plain variables read through `lookup` (tests).
    pub fn load_from(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, config::ConfigError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(File::from(file).format(FileFormat::Toml).required(true));
        }
        builder = builder
            .add_source(
                Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .set_override_option("database.url", lookup("DATABASE_URL"))?
            .set_override_option("database.session_url", lookup("DATABASE_SESSION_URL"))?
            .set_override_option("database.read_urls", lookup("DATABASE_READ_URL"))?
            .set_override_option("database.schema", lookup("DATABASE_SCHEMA"))?
            .set_override_option("migration.archive_soak_hours", lookup("ARCHIVE_SOAK_HOURS"))?
            .set_override_option("auth.writer_tokens", lookup("WRITER_API_TOKEN"))?
            .set_override_option("auth.admin_tokens", lookup("ADMIN_API_TOKEN"))?
            .set_override_option("auth.jwt_public_key", lookup("JWT_PUBLIC_KEY"))?
            .set_override_option("auth.jwt_public_key_file", lookup("JWT_PUBLIC_KEY_FILE"))?
            .set_override_option("auth.jwt_issuer", lookup("JWT_ISSUER"))?
            .set_override_option("auth.jwt_audience", lookup("JWT_AUDIENCE"))?;
        for variable in vars::ALL {
            builder = builder.set_override_option(
                format!("flags.{}", variable.to_ascii_lowercase()),
                lookup(variable),
            )?;
        }
        builder.build()?.try_deserialize()
    }
}

const DEFAULTS: &str = r#"
[server]
bind = "127.0.0.1:8080"
max_in_flight = 256
max_writes_in_flight_per_client = 16
max_in_flight_per_client = 64
max_connections = 0
trust_forwarded_for = false
keep_alive_seconds = 75
request_head_timeout_ms = 5000
request_body_timeout_ms = 10000

[database]
max_connections = 10
migrate_on_start = true
statement_timeout_ms = 30000
lock_timeout_ms = 3000
idle_in_transaction_timeout_ms = 60000
replica_max_lag_ms = 1000
transaction_pooler = false
schema = "attributes"

[telemetry]
format = "pretty"
filter = "info"

[cache]
enabled = true
max_bytes = 67108864
ttl_seconds = 300
stale_if_error_seconds = 120
"#;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, config::ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        Settings::load_from(None, |name| env.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn defaults_use_the_embedded_sqlite_file_and_phase_zero() {
        let settings = load(&[]).expect("defaults load");
        assert_eq!(settings.database.url(), DEFAULT_DATABASE_URL);
        assert_eq!(settings.flags.parse(), Ok(Flags::default()));
        assert!(settings.auth.writer_tokens().is_empty());
    }

    #[test]
    fn plain_variables_override_the_layers() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("WRITER_API_TOKEN", "new-token, old-token"),
            ("USE_UNIFIED_ATTRIBUTES", "true"),
            ("DUAL_WRITE_ATTRIBUTES", "true"),
            ("UNIFIED_ATTRIBUTES_PERCENT", "25"),
        ])
        .expect("settings load");
        assert_eq!(settings.database.url(), "postgres://u@h/db");
        assert_eq!(settings.auth.writer_tokens().len(), 2);
        let flags = settings.flags.parse().expect("flags parse");
        assert!(flags.use_unified && flags.dual_write);
        assert_eq!(flags.unified_percent, 25);
    }

    #[test]
    fn a_malformed_flag_names_the_variable() {
        let settings = load(&[("UNIFIED_ATTRIBUTES_PERCENT", "150")]).expect("settings load");
        let err = settings.flags.parse().expect_err("must be refused");
        assert!(
            err.to_string().contains("UNIFIED_ATTRIBUTES_PERCENT"),
            "{err}"
        );
    }
}
