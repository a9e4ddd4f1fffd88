//! Prometheus metrics: the names dashboards and alerts depend on, in one place.
//!
//! The four names of the seed are kept exactly: `unified_attributes_requests_total`,
//! `unified_attributes_errors_total`, `unified_attributes_cache_hits` and
//! `unified_attributes_response_time` (seconds). Labels are route templates, never raw paths.
//!
//! `names` registers every series (names, help, labels); `middleware` times the requests (for
//! `admission`, the way in);
//! `background` keeps the database's facts up to date; this module records and renders.

mod background;
mod middleware;
mod names;

pub use background::refresh_operations;
pub(crate) use middleware::record;

use std::sync::Mutex;

use actix_web::{HttpResponse, web};
use cache::{AttributeCaches, StatsSnapshot};
use flags::{Flags, Phase};
use prometheus::{
    Encoder, GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
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

impl Metrics {
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
        // Each series is set in place, never reset first: a scrape between a reset and the
        // next set would see the series vanish, and a dashboard would draw a gap.
        for kind in storage::quarantine::QuarantineKind::ALL {
            let count = facts
                .quarantine_by_kind
                .iter()
                .find(|(counted, _)| counted == kind.as_str())
                .map_or(0, |(_, count)| *count);
            self.quarantine_values
                .with_label_values(&[kind.as_str()])
                .set(count);
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

    pub fn read_served(&self, served_by: storage::ServedBy) {
        self.reads_served
            .with_label_values(&[served_by.as_str()])
            .inc();
        if let storage::ServedBy::Fallback(reason) = served_by {
            self.fallbacks.with_label_values(&[reason.as_str()]).inc();
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
