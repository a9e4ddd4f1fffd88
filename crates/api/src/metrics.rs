//! Prometheus metrics: the names dashboards and alerts depend on, in one place.
//!
//! The four names of the seed are kept exactly: `unified_attributes_requests_total`,
//! `unified_attributes_errors_total`, `unified_attributes_cache_hits` and
//! `unified_attributes_response_time` (seconds). Labels are route templates, never raw paths.

use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use cache::{AttributeCaches, StatsSnapshot};
use flags::{Flags, Phase};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use storage::Storage;

/// Every metric of the service, registered in its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    response_time: HistogramVec,
    /// The seed's name, kept for its dashboards: the running count of hits, as a gauge
    /// (counters must end in `_total`); new queries use `cache_hits_total`.
    cache_hits_seed: IntGaugeVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_entries: IntGaugeVec,
    cache_bytes: IntGaugeVec,
    reads_served: IntCounterVec,
    fallbacks: IntCounterVec,
    writes: IntCounterVec,
    db_queries: IntCounter,
    reads_refused: IntCounter,
    db_pool: IntGaugeVec,
    flag: IntGaugeVec,
    rollout_percent: IntGauge,
    shadow_percent: IntGauge,
    phase: IntGauge,
    listener_reconnects: IntCounter,
    stale_answers: IntCounter,
    open_connections: IntGauge,
    idle_connections_closed: IntCounter,
    cache_unconfirmed: IntGauge,
    invalidations_heard: IntCounter,
    replica_up: IntGaugeVec,
    replica_lag: GaugeVec,
    replica_reads: IntCounterVec,
    replica_taken_out: IntCounterVec,
    primary_reads: IntCounterVec,
    throttle_paused: IntGaugeVec,
    throttled: IntGaugeVec,
    throttle_lag: GaugeVec,
    change_lag: GaugeVec,
    capture_pending: IntGauge,
    direct_writes: IntGauge,
    shed: IntCounter,
    shadow: IntCounterVec,
    memory_limit: IntGauge,
    backfill_completed: IntGaugeVec,
    backfill_updated: GaugeVec,
    backfill_percent: GaugeVec,
    backfill_rows: IntGaugeVec,
    unified_read_percent: IntGauge,
    quarantine_values: IntGaugeVec,
    quarantine_blocking: IntGauge,
    last_verify_at: prometheus::Gauge,
    last_verify_drifted: IntGauge,
    last_verify_checked: IntGauge,
    sync_pending: IntGauge,
    archived: IntGauge,
    /// Serializes scrapes: counters that mirror other counters are advanced by the difference.
    scrape: Mutex<()>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn float_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let response_time = HistogramVec::new(
            HistogramOpts::new(
                "unified_attributes_response_time",
                "Time to answer a request, in seconds.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(response_time.clone()))
            .expect("unique metric name");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("one process collector");
        let build_info = gauge_vec(
            &registry,
            "unified_attributes_build_info",
            "Always 1; the labels say what runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Self {
            requests: counter_vec(
                &registry,
                "unified_attributes_requests_total",
                "Requests answered.",
                &["route", "method", "status"],
            ),
            errors: counter_vec(
                &registry,
                "unified_attributes_errors_total",
                "Requests the service failed (5xx status).",
                &["route", "method", "status"],
            ),
            response_time,
            cache_hits_seed: gauge_vec(
                &registry,
                "unified_attributes_cache_hits",
                "Lookups answered from the cache since start (the seed's name; prefer unified_attributes_cache_hits_total).",
                &["cache"],
            ),
            cache_hits: counter_vec(
                &registry,
                "unified_attributes_cache_hits_total",
                "Lookups answered from the cache.",
                &["cache"],
            ),
            cache_misses: counter_vec(
                &registry,
                "unified_attributes_cache_misses_total",
                "Lookups that had to load.",
                &["cache"],
            ),
            cache_evictions: counter_vec(
                &registry,
                "unified_attributes_cache_evictions_total",
                "Entries removed for size or age (not invalidations).",
                &["cache"],
            ),
            cache_entries: gauge_vec(
                &registry,
                "unified_attributes_cache_entries",
                "Entries held.",
                &["cache"],
            ),
            cache_bytes: gauge_vec(
                &registry,
                "unified_attributes_cache_bytes",
                "Memory the cache holds, in bytes: response bodies plus the measured overhead of each entry; for the catalog, an estimate of 1 KiB per attribute.",
                &["cache"],
            ),
            reads_served: counter_vec(
                &registry,
                "unified_attributes_reads_served_total",
                "Reads by the store that answered: legacy, unified, fallback_error, fallback_empty.",
                &["served_by"],
            ),
            fallbacks: counter_vec(
                &registry,
                "unified_attributes_fallbacks_total",
                "Unified reads answered from legacy.",
                &["reason"],
            ),
            writes: counter_vec(
                &registry,
                "unified_attributes_writes_total",
                "Writes by mode (legacy_only, dual, unified_only) and result (committed, refused, failed).",
                &["mode", "result"],
            ),
            reads_refused: counter(
                &registry,
                "unified_attributes_db_reads_refused_total",
                "Reads refused at once (503) because every read connection was busy and enough reads waited for one.",
            ),
            db_queries: counter(
                &registry,
                "unified_attributes_db_queries_total",
                "Statements sent to the database.",
            ),
            db_pool: gauge_vec(
                &registry,
                "unified_attributes_db_pool_connections",
                "Pool connections by state.",
                &["state"],
            ),
            flag: gauge_vec(
                &registry,
                "unified_attributes_flag",
                "Migration flags, 1 = on.",
                &["flag"],
            ),
            rollout_percent: gauge(
                &registry,
                "unified_attributes_rollout_percent",
                "UNIFIED_ATTRIBUTES_PERCENT in force.",
            ),
            shadow_percent: gauge(
                &registry,
                "unified_attributes_shadow_percent",
                "UNIFIED_ATTRIBUTES_SHADOW_PERCENT in force.",
            ),
            phase: gauge(
                &registry,
                "unified_attributes_phase",
                "Migration phase: 0 legacy … 4 archived.",
            ),
            listener_reconnects: counter(
                &registry,
                "unified_attributes_invalidation_listener_reconnects_total",
                "Times the cross-replica invalidation listener lost its connection (until it is back, cached answers are revalidated; then dropped).",
            ),
            stale_answers: counter(
                &registry,
                "unified_attributes_stale_answers_total",
                "Cached answers served while the database could not answer and invalidations could not be heard (stale-if-error).",
            ),
            open_connections: gauge(
                &registry,
                "unified_attributes_open_connections",
                "Client connections open on the public listener.",
            ),
            idle_connections_closed: counter(
                &registry,
                "unified_attributes_idle_connections_closed_total",
                "Idle client connections closed to make room for new ones (past 90 % of the connection cap).",
            ),
            cache_unconfirmed: gauge(
                &registry,
                "unified_attributes_cache_unconfirmed",
                "1 while the invalidation listener is lost: cached answers are revalidated on every read.",
            ),
            invalidations_heard: counter(
                &registry,
                "unified_attributes_invalidations_heard_total",
                "Invalidations heard from other replicas (and this one) through LISTEN and applied to the cache.",
            ),
            replica_up: gauge_vec(
                &registry,
                "unified_attributes_replica_up",
                "1 while a read replica serves reads (answers, and lags no more than its limit).",
                &["replica"],
            ),
            replica_lag: float_gauge_vec(
                &registry,
                "unified_attributes_replica_lag_seconds",
                "Replay lag of a read replica at its last poll (absent while it does not answer).",
                &["replica"],
            ),
            replica_reads: counter_vec(
                &registry,
                "unified_attributes_replica_reads_total",
                "Uncached reads a read replica answered.",
                &["replica"],
            ),
            replica_taken_out: counter_vec(
                &registry,
                "unified_attributes_replica_taken_out_total",
                "Times a read replica was taken out of reads (lagging, unreachable, failed a read, not a standby).",
                &["replica"],
            ),
            primary_reads: counter_vec(
                &registry,
                "unified_attributes_primary_reads_total",
                "Uncached reads the primary answered although replicas are configured: stale (no replica had replayed the read's last write yet), no_replica, replica_failed.",
                &["reason"],
            ),
            throttle_paused: gauge_vec(
                &registry,
                "unified_attributes_operation_paused",
                "1 while a bulk operation (backfill, sync_legacy) is told to pause.",
                &["operation"],
            ),
            throttled: gauge_vec(
                &registry,
                "unified_attributes_operation_throttled",
                "1 while a running bulk operation waits (paused, replica lag, load), as it last reported.",
                &["operation"],
            ),
            change_lag: {
                let lag = float_gauge_vec(
                    &registry,
                    "unified_attributes_change_lag_seconds",
                    "Age of the oldest change not yet taken: stream capture (a write that bypassed the service, not yet applied to unified) or feed (a change not yet in the change feed).",
                    &["stream"],
                );
                for stream in ["capture", "feed"] {
                    lag.with_label_values(&[stream]).set(0.0);
                }
                lag
            },
            capture_pending: gauge(
                &registry,
                "unified_attributes_capture_pending",
                "Captured writes that bypassed the service and wait to be applied to unified.",
            ),
            direct_writes: gauge(
                &registry,
                "unified_attributes_direct_writes_last_hour",
                "Writes to the legacy tables that bypassed the service in the last hour (the marketplace's own code, scripts): who still writes legacy.",
            ),
            throttle_lag: float_gauge_vec(
                &registry,
                "unified_attributes_operation_replica_lag_seconds",
                "The replica replay lag a running bulk operation last measured.",
                &["operation"],
            ),
            shed: counter(
                &registry,
                "unified_attributes_shed_total",
                "Requests refused at once (503) because the worker was at its bound of requests in flight.",
            ),
            shadow: counter_vec(
                &registry,
                "unified_attributes_shadow_comparisons_total",
                "Shadow reads comparing both stores, by result: match, mismatch, error.",
                &["result"],
            ),
            memory_limit: gauge(
                &registry,
                "unified_attributes_memory_limit_bytes",
                "The container's memory limit (cgroup), 0 when there is none.",
            ),
            backfill_completed: gauge_vec(
                &registry,
                "unified_attributes_backfill_completed",
                "1 when the backfill of the entity kind has finished.",
                &["entity_type"],
            ),
            backfill_updated: float_gauge_vec(
                &registry,
                "unified_attributes_backfill_updated_timestamp_seconds",
                "When the backfill checkpoint of the entity kind last moved.",
                &["entity_type"],
            ),
            backfill_percent: float_gauge_vec(
                &registry,
                "unified_attributes_backfill_percent",
                "Entities of the kind at or before the backfill checkpoint, in per cent of all (100 once finished).",
                &["entity_type"],
            ),
            backfill_rows: gauge_vec(
                &registry,
                "unified_attributes_backfill_rows",
                "Legacy values the backfill migrated, and those in the quarantine now, by entity kind.",
                &["entity_type", "outcome"],
            ),
            unified_read_percent: gauge(
                &registry,
                "unified_attributes_unified_read_percent",
                "Share of readers the unified store serves now: UNIFIED_ATTRIBUTES_PERCENT while USE_UNIFIED_ATTRIBUTES is on, else 0.",
            ),
            quarantine_values: gauge_vec(
                &registry,
                "unified_attributes_quarantine_values",
                "Legacy values in the quarantine, by kind (invalid, unknown, unreadable, refused, orphan, empty).",
                &["kind"],
            ),
            quarantine_blocking: gauge(
                &registry,
                "unified_attributes_quarantine_blocking",
                "Quarantined values users see that nobody resolved or accepted: unified reads without fallback wait for them.",
            ),
            last_verify_at: {
                let metric = prometheus::Gauge::new(
                    "unified_attributes_last_verify_timestamp_seconds",
                    "When the last verify finished (0: never).",
                )
                .expect("valid metric definition");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("unique metric name");
                metric
            },
            last_verify_drifted: gauge(
                &registry,
                "unified_attributes_last_verify_drifted",
                "Entities the last verify found differing between the stores.",
            ),
            last_verify_checked: gauge(
                &registry,
                "unified_attributes_last_verify_checked",
                "Entities the last verify compared.",
            ),
            sync_pending: gauge(
                &registry,
                "unified_attributes_legacy_sync_pending",
                "1 while writes reached only unified since the last sync-legacy.",
            ),
            archived: gauge(
                &registry,
                "unified_attributes_archived",
                "1 while the legacy tables are in the archive.",
            ),
            registry,
            scrape: Mutex::new(()),
        };
        metrics
            .memory_limit
            .set(container_memory_limit().map_or(0, |limit| i64::try_from(limit).unwrap_or(0)));
        // Every series alerts and dashboards name exists from the start, at 0: a query never
        // has to tell "nothing happened" from "not exported".
        for mode in ["legacy_only", "dual", "unified_only"] {
            for result in ["committed", "refused", "failed"] {
                metrics.writes.with_label_values(&[mode, result]);
            }
        }
        for result in ["match", "mismatch", "error"] {
            metrics.shadow.with_label_values(&[result]);
        }
        for kind in QUARANTINE_KINDS {
            metrics.quarantine_values.with_label_values(&[kind]);
        }
        for operation in storage::throttle::Operation::ALL {
            metrics
                .throttle_paused
                .with_label_values(&[operation.as_str()]);
            metrics.throttled.with_label_values(&[operation.as_str()]);
            metrics
                .throttle_lag
                .with_label_values(&[operation.as_str()]);
        }
        for served_by in [
            "legacy",
            "unified",
            "fallback_error",
            "fallback_empty",
            "fallback_quarantined",
        ] {
            metrics.reads_served.with_label_values(&[served_by]);
        }
        // The backfill's gauges exist before the first background read (not its timestamp: the
        // stall alert must not see a backfill that never started).
        for entity_type in ["listing", "product", "product_variant"] {
            metrics.backfill_completed.with_label_values(&[entity_type]);
            metrics.backfill_percent.with_label_values(&[entity_type]);
            for outcome in ["migrated", "quarantined"] {
                metrics
                    .backfill_rows
                    .with_label_values(&[entity_type, outcome]);
            }
        }
        for reason in ["error", "empty", "quarantined"] {
            metrics.fallbacks.with_label_values(&[reason]);
        }
        // The seed's error counter is exported before the first failure too.
        metrics
            .errors
            .with_label_values(&["unmatched", "other", "5xx"]);
        metrics
    }

    /// Records where the backfill stands (read from the database at scrape time).
    pub fn set_backfill(&self, progress: &[storage::backfill::Progress]) {
        for kind in progress {
            let entity_type = kind.entity_type.as_str();
            self.backfill_completed
                .with_label_values(&[entity_type])
                .set(i64::from(kind.completed));
            if kind.completed {
                self.backfill_percent
                    .with_label_values(&[entity_type])
                    .set(100.0);
            }
            self.backfill_updated
                .with_label_values(&[entity_type])
                .set(kind.updated_epoch_seconds);
            self.backfill_rows
                .with_label_values(&[entity_type, "migrated"])
                .set(kind.migrated);
            self.backfill_rows
                .with_label_values(&[entity_type, "quarantined"])
                .set(kind.quarantined);
        }
    }

    /// Records where each unfinished backfill stands among its kind's entities.
    pub fn set_backfill_percent(&self, percents: &[(String, f64)]) {
        for (entity_type, percent) in percents {
            self.backfill_percent
                .with_label_values(&[entity_type])
                .set(*percent);
        }
    }

    /// Records what the database says of the migration (read in the background).
    pub fn set_facts(&self, facts: &storage::status::MigrationFacts) {
        self.quarantine_values.reset();
        for kind in QUARANTINE_KINDS {
            self.quarantine_values.with_label_values(&[kind]).set(0);
        }
        for (kind, count) in &facts.quarantine_by_kind {
            self.quarantine_values
                .with_label_values(&[kind])
                .set(*count);
        }
        self.quarantine_blocking.set(facts.quarantine_blocking);
        self.last_verify_at
            .set(facts.last_verify_epoch_seconds.unwrap_or(0.0));
        self.last_verify_drifted
            .set(facts.last_verify_drifted.unwrap_or(0));
        self.last_verify_checked
            .set(facts.last_verify_checked.unwrap_or(0));
        self.sync_pending.set(i64::from(facts.sync_pending));
        self.archived.set(i64::from(facts.archived));
    }

    /// Records the flags in force.
    pub fn set_flags(&self, flags: &Flags, phase: Phase) {
        for (name, on) in [
            ("use_unified", flags.use_unified),
            ("fallback", flags.fallback),
            ("dual_write", flags.dual_write),
        ] {
            self.flag.with_label_values(&[name]).set(i64::from(on));
        }
        // As `flags` and `status` say it; what readers get is the next gauge.
        self.rollout_percent.set(i64::from(flags.unified_percent));
        self.unified_read_percent
            .set(i64::from(if flags.use_unified {
                flags.unified_percent
            } else {
                0
            }));
        self.shadow_percent.set(i64::from(flags.shadow_percent));
        self.phase.set(i64::from(phase.number()));
    }

    pub fn read_served(&self, served_by: &str) {
        self.reads_served.with_label_values(&[served_by]).inc();
        if let Some(reason) = served_by.strip_prefix("fallback_") {
            self.fallbacks.with_label_values(&[reason]).inc();
        }
    }

    pub fn write(&self, mode: flags::WriteMode, result: &str) {
        let mode = match mode {
            flags::WriteMode::LegacyOnly => "legacy_only",
            flags::WriteMode::Dual => "dual",
            flags::WriteMode::UnifiedOnly => "unified_only",
        };
        self.writes.with_label_values(&[mode, result]).inc();
    }

    pub fn shadow(&self, result: &str) {
        self.shadow.with_label_values(&[result]).inc();
    }

    pub fn invalidations_heard(&self, count: usize) {
        self.invalidations_heard.inc_by(count as u64);
    }

    /// Records what the bulk operations' throttles say (read from the database at scrape).
    pub fn set_throttles(&self, throttles: &[storage::throttle::Throttle]) {
        for throttle in throttles {
            let operation = throttle.operation.as_str();
            self.throttle_paused
                .with_label_values(&[operation])
                .set(i64::from(throttle.paused));
            self.throttled
                .with_label_values(&[operation])
                .set(i64::from(throttle.throttled.is_some()));
            self.throttle_lag
                .with_label_values(&[operation])
                .set(throttle.lag_ms.unwrap_or(0) as f64 / 1000.0);
        }
    }

    /// Records how far capture and the change feed are behind.
    pub fn set_capture(&self, status: &storage::capture::CaptureStatus) {
        self.change_lag
            .with_label_values(&["capture"])
            .set(status.oldest_unapplied_seconds);
        self.change_lag
            .with_label_values(&["feed"])
            .set(status.oldest_unsequenced_seconds);
        self.capture_pending.set(status.unapplied);
        self.direct_writes.set(status.direct_last_hour);
    }

    pub fn listener_reconnected(&self) {
        self.listener_reconnects.inc();
    }

    pub fn shed(&self) {
        self.shed.inc();
    }

    fn record_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[route, method, class])
            .inc();
        // An error is the service's failure (5xx), as the alerts and the canary gates count it;
        // a 4xx is the client's, visible in `requests_total` by its status.
        if status >= 500 {
            self.errors.with_label_values(&[route, method, class]).inc();
        }
        self.response_time
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The exposition text, with the mirrored counters and gauges brought up to date.
    pub fn render(&self, caches: &AttributeCaches, pools: &[Storage]) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.mirror_cache("responses", caches.response_stats());
        self.mirror_cache("catalog", caches.catalogs.stats());
        advance(&self.stale_answers, caches.stale_served());
        self.cache_unconfirmed.set(i64::from(caches.unconfirmed()));
        advance(&self.db_queries, storage::queries_executed());
        advance(&self.reads_refused, storage::reads_refused());
        if let Some(storage) = pools.first() {
            self.mirror_replicas(storage);
        }
        let (open, idle) = pools
            .iter()
            .map(Storage::pool_connections)
            .fold((0, 0), |(o, i), (po, pi)| (o + po, i + pi));
        self.db_pool
            .with_label_values(&["open"])
            .set(i64::from(open));
        self.db_pool
            .with_label_values(&["idle"])
            .set(i64::try_from(idle).unwrap_or(i64::MAX));
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%err, "metrics encoding failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Replicas' state is shared by every worker's storage: one of them tells it.
    fn mirror_replicas(&self, storage: &Storage) {
        for replica in storage.replicas() {
            let name = replica.name.as_str();
            self.replica_up.with_label_values(&[name]).set(i64::from(
                replica.state == storage::replicas::ReplicaState::Serving,
            ));
            match replica.lag {
                Some(lag) => self
                    .replica_lag
                    .with_label_values(&[name])
                    .set(lag.as_secs_f64()),
                None => {
                    let _ = self.replica_lag.remove_label_values(&[name]);
                }
            }
            advance(
                &self.replica_reads.with_label_values(&[name]),
                replica.reads,
            );
            advance(
                &self.replica_taken_out.with_label_values(&[name]),
                replica.taken_out,
            );
        }
        for (why, count) in storage.primary_reads() {
            advance(
                &self.primary_reads.with_label_values(&[why.as_str()]),
                count,
            );
        }
    }

    fn mirror_cache(&self, cache: &str, stats: StatsSnapshot) {
        advance(&self.cache_hits.with_label_values(&[cache]), stats.hits);
        self.cache_hits_seed
            .with_label_values(&[cache])
            .set(i64::try_from(stats.hits).unwrap_or(i64::MAX));
        advance(&self.cache_misses.with_label_values(&[cache]), stats.misses);
        advance(
            &self.cache_evictions.with_label_values(&[cache]),
            stats.evictions,
        );
        self.cache_entries
            .with_label_values(&[cache])
            .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .with_label_values(&[cache])
            .set(i64::try_from(stats.weighted_size).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves a counter that mirrors a monotonic source up to the source's value.
fn advance(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Routes that only machines call to watch the service.
const NOT_USER_TRAFFIC: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

/// Middleware: counts and times every user request under its route template.
pub async fn track(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let state = request.app_data::<web::Data<crate::AppState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = state {
        // Routing put the matched resource's template in the request's app data.
        let route = response
            .request()
            .app_data::<crate::RouteTemplate>()
            .map_or("unmatched", |t| t.0);
        // Probes and scrapes are not user traffic: counted, they would let a canary gate pass
        // on kubelet and Prometheus requests alone, and shape its latency at low weight.
        if NOT_USER_TRAFFIC.contains(&route) {
            return Ok(response);
        }
        let method = method_label(response.request().method());
        let status = response.status().as_u16();
        state
            .metrics
            .record_request(route, method, status, started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// The method as a label from a closed set: a client inventing methods (`FOO1`, `FOO2`, …)
/// must not add series to the exposition.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The memory limit of this process's cgroup (v2, else v1); `None` when unlimited.
fn container_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    // cgroup v1 spells "unlimited" as a number near 2^63.
    limit
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|bytes| *bytes < 1 << 60)
}

/// The kinds of quarantined value (the `kind` column's CHECK): each has its series from the start.
const QUARANTINE_KINDS: [&str; 6] = [
    "invalid",
    "unknown",
    "unreadable",
    "refused",
    "orphan",
    "empty",
];

/// How often the gauges of other processes' bulk operations are read from the database.
const OPERATIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the gauges of the bulk operations (the backfill runs in another process; its
/// checkpoints and the throttles are the shared truth) up to date in the background, so a
/// scrape runs no query: a flood of scrapes costs the database nothing. A slow or absent
/// database leaves the last values.
pub fn refresh_operations(state: &crate::AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(OPERATIONS_REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let limit = std::time::Duration::from_secs(1);
            match tokio::time::timeout(limit, state.storage.backfill_progress()).await {
                Ok(Ok(progress)) => state.metrics.set_backfill(&progress),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "backfill progress unavailable")
                }
                Err(_) => tracing::debug!("backfill progress timed out"),
            }
            match tokio::time::timeout(limit, state.storage.backfill_percent()).await {
                Ok(Ok(percents)) => state.metrics.set_backfill_percent(&percents),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "backfill position unavailable")
                }
                Err(_) => tracing::debug!("backfill position timed out"),
            }
            match tokio::time::timeout(limit, state.storage.throttles()).await {
                Ok(Ok(throttles)) => state.metrics.set_throttles(&throttles),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "throttles unavailable")
                }
                Err(_) => tracing::debug!("throttles timed out"),
            }
            match tokio::time::timeout(limit, state.storage.migration_facts()).await {
                Ok(Ok(facts)) => state.metrics.set_facts(&facts),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "migration facts unavailable")
                }
                Err(_) => tracing::debug!("migration facts timed out"),
            }
            match tokio::time::timeout(limit, state.storage.capture_status()).await {
                Ok(Ok(status)) => state.metrics.set_capture(&status),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "capture status unavailable")
                }
                Err(_) => tracing::debug!("capture status timed out"),
            }
        }
    });
}

/// `GET /metrics`: values kept in memory, no query.
pub async fn scrape(state: web::Data<crate::AppState>) -> HttpResponse {
    let metrics = &state.metrics;
    metrics
        .open_connections
        .set(i64::try_from(state.connections.open()).unwrap_or(i64::MAX));
    advance(
        &metrics.idle_connections_closed,
        state.connections.closed_idle(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(
            &state.caches,
            &state.pools.lock().map(|p| p.clone()).unwrap_or_default(),
        ))
}
