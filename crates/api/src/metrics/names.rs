//! Every series the service exports, registered once: the names dashboards and alerts use.

use std::sync::Mutex;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::*;

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
        for kind in storage::quarantine::QuarantineKind::ALL {
            metrics
                .quarantine_values
                .with_label_values(&[kind.as_str()]);
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
        for served_by in storage::ServedBy::ALL {
            metrics
                .reads_served
                .with_label_values(&[served_by.as_str()]);
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
        for served_by in storage::ServedBy::ALL {
            if let storage::ServedBy::Fallback(reason) = served_by {
                metrics.fallbacks.with_label_values(&[reason.as_str()]);
            }
        }
        // The seed's error counter is exported before the first failure too.
        metrics
            .errors
            .with_label_values(&["unmatched", "other", "5xx"]);
        metrics
    }
}
