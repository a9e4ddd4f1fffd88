//! What the handlers of a worker share: `AppState` (storage, caches, metrics, tokens, the flags
//! in force) and the reads it makes on their behalf.

use std::sync::{Arc, RwLock};

use cache::AttributeCaches;
use domain::{Attribute, Invalidation};
use flags::{Flags, Phase};
use secrecy::SecretString;
use storage::{ReadRoute, Storage};

use crate::error::ApiError;
use crate::metrics::Metrics;

use crate::*;

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
