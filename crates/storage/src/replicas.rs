//! Streaming read replicas: which of them may serve a read, and how far each lags.
//!
//! One task per process ([`watch`]) asks the primary for its WAL position and every replica
//! for the position it has replayed, every [`POLL`]. A replica serves reads while it answers
//! and lags no more than its limit; otherwise it is taken out (and counted) until a poll finds
//! it well again, while the primary answers its reads. A read goes to a serving replica only
//! when that replica has replayed the position the read's scope requires ([`Freshness`]), so
//! no replica answers from before a write whose invalidation this process has applied.
//!
//! Lag is time, measured on the primary's clock-free history: the primary's positions are
//! sampled with the instant they were seen; a replica lags by the age of the oldest sample it
//! has not replayed yet (zero once it has replayed them all), which also holds while the
//! primary is idle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Row};

use crate::freshness::{Freshness, Lsn};

/// How often positions are polled.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A replica that does not answer a poll within this is unreachable.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// How much of the primary's history is kept to measure lag (beyond: "at least this").
const HISTORY: Duration = Duration::from_secs(120);

/// The primary's current WAL position. (Simple protocol: one message, safe behind a pooler.)
pub(crate) const PRIMARY_POSITION: &str =
    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint";

/// What a standby has replayed; NULL on a server that is not in recovery.
const REPLAYED_POSITION: &str = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint";

/// Why a read went to the primary although replicas are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryRead {
    /// A replica serves, but none has replayed the position the read requires yet.
    Stale,
    /// No replica serves (lagging, unreachable or not a standby).
    NoReplica,
    /// The replica failed the read; it was taken out and the primary answered.
    ReplicaFailed,
}

impl PrimaryRead {
    pub const ALL: [PrimaryRead; 3] = [Self::Stale, Self::NoReplica, Self::ReplicaFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::NoReplica => "no_replica",
            Self::ReplicaFailed => "replica_failed",
        }
    }
}

/// How a replica stands, as the last poll found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    Serving,
    Lagging,
    Unreachable,
    NotAStandby,
}

/// One replica, for the metrics and the readiness report.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// `host:port/database`, never the credentials.
    pub name: String,
    pub state: ReplicaState,
    /// Replay lag at the last successful poll.
    pub lag: Option<Duration>,
    pub reads: u64,
    pub taken_out: u64,
}

#[derive(Debug)]
struct Replica {
    name: String,
    options: PgConnectOptions,
    serving: AtomicBool,
    state: Mutex<ReplicaState>,
    replayed: AtomicU64,
    /// Milliseconds; `u64::MAX` while unknown.
    lag_ms: AtomicU64,
    reads: AtomicU64,
    taken_out: AtomicU64,
}

/// The replicas of one process, shared by its workers.
#[derive(Debug)]
pub(crate) struct ReplicaSet {
    replicas: Vec<Replica>,
    pub(crate) freshness: Freshness,
    max_lag: Duration,
    next: AtomicUsize,
    primary_history: Mutex<VecDeque<(Instant, Lsn)>>,
    primary_reads: [AtomicU64; 3],
}

impl ReplicaSet {
    pub(crate) fn new(replicas: Vec<PgConnectOptions>, max_lag: Duration) -> Self {
        Self {
            replicas: replicas
                .into_iter()
                .map(|options| Replica {
                    name: format!(
                        "{}:{}/{}",
                        options.get_host(),
                        options.get_port(),
                        options.get_database().unwrap_or_default()
                    ),
                    options,
                    serving: AtomicBool::new(false),
                    state: Mutex::new(ReplicaState::Unreachable),
                    replayed: AtomicU64::new(0),
                    lag_ms: AtomicU64::new(u64::MAX),
                    reads: AtomicU64::new(0),
                    taken_out: AtomicU64::new(0),
                })
                .collect(),
            freshness: Freshness::not_yet_listening(),
            max_lag,
            next: AtomicUsize::new(0),
            primary_history: Mutex::new(VecDeque::new()),
            primary_reads: Default::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.replicas.len()
    }

    pub(crate) fn options(&self, replica: usize) -> &PgConnectOptions {
        &self.replicas[replica].options
    }

    /// A serving replica that has replayed `required`, taking turns; else why the primary.
    pub(crate) fn choose(&self, required: Lsn) -> Result<usize, PrimaryRead> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut any_serving = false;
        for offset in 0..count {
            let index = (start + offset) % count;
            let replica = &self.replicas[index];
            if !replica.serving.load(Ordering::Acquire) {
                continue;
            }
            any_serving = true;
            if replica.replayed.load(Ordering::Acquire) >= required {
                replica.reads.fetch_add(1, Ordering::Relaxed);
                return Ok(index);
            }
        }
        Err(if any_serving {
            PrimaryRead::Stale
        } else {
            PrimaryRead::NoReplica
        })
    }

    pub(crate) fn count_primary_read(&self, why: PrimaryRead) {
        self.primary_reads[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the primary answered, by why, since start.
    pub(crate) fn primary_reads(&self) -> [(PrimaryRead, u64); 3] {
        PrimaryRead::ALL.map(|why| {
            (
                why,
                self.primary_reads[why as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// A read on `replica` failed below SQL: out until a poll finds it well.
    pub(crate) fn read_failed(&self, replica: usize, error: &crate::StorageError) {
        tracing::warn!(replica = %self.replicas[replica].name, error = %crate::Logged(error), "read replica failed a read; taken out, the primary answers");
        self.set_state(replica, ReplicaState::Unreachable);
    }

    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|replica| {
                let lag_ms = replica.lag_ms.load(Ordering::Relaxed);
                ReplicaStatus {
                    name: replica.name.clone(),
                    state: *replica
                        .state
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                    lag: (lag_ms != u64::MAX).then(|| Duration::from_millis(lag_ms)),
                    reads: replica.reads.load(Ordering::Relaxed),
                    taken_out: replica.taken_out.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The largest replay lag among the replicas that answer (the throttle's measure), with
    /// the replica's name.
    pub(crate) fn max_lag(&self) -> Option<(String, Duration)> {
        self.status()
            .into_iter()
            .filter_map(|status| status.lag.map(|lag| (status.name, lag)))
            .max_by_key(|(_, lag)| *lag)
    }

    fn sample_primary(&self, lsn: Lsn, now: Instant) {
        let mut history = self
            .primary_history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if history.back().is_none_or(|(_, last)| lsn > *last) {
            history.push_back((now, lsn));
        }
        while history
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > HISTORY)
            && history.len() > 1
        {
            history.pop_front();
        }
    }

    /// How long ago the primary had WAL that `replayed` does not reach yet.
    fn lag_of(&self, replayed: Lsn, now: Instant) -> Duration {
        let history = self
            .primary_history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        history
            .iter()
            .find(|(_, lsn)| *lsn > replayed)
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }

    fn observe(&self, replica: usize, replayed: Option<Lsn>, now: Instant) {
        let Some(replayed) = replayed else {
            self.set_state(replica, ReplicaState::NotAStandby);
            return;
        };
        let lag = self.lag_of(replayed, now);
        let r = &self.replicas[replica];
        r.replayed.store(replayed, Ordering::Release);
        r.lag_ms.store(
            lag.as_millis().try_into().unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
        self.set_state(
            replica,
            if lag <= self.max_lag {
                ReplicaState::Serving
            } else {
                ReplicaState::Lagging
            },
        );
    }

    fn set_state(&self, replica: usize, state: ReplicaState) {
        let r = &self.replicas[replica];
        let mut current = r
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current == state {
            return;
        }
        let serving = state == ReplicaState::Serving;
        if *current == ReplicaState::Serving {
            r.taken_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(replica = %r.name, ?state, "read replica taken out");
        } else if serving {
            tracing::info!(replica = %r.name, "read replica serves reads");
        }
        if state != ReplicaState::Serving && state != ReplicaState::Lagging {
            r.lag_ms.store(u64::MAX, Ordering::Relaxed);
        }
        *current = state;
        r.serving.store(serving, Ordering::Release);
    }
}

/// Polls the primary and the replicas until `set` is dropped.
pub(crate) fn watch(set: &Arc<ReplicaSet>, primary: PgConnectOptions) {
    let weak = Arc::downgrade(set);
    let replicas = set.len();
    tokio::spawn(async move {
        let mut primary_connection = None;
        let mut connections: Vec<Option<PgConnection>> = (0..replicas).map(|_| None).collect();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(set) = Weak::upgrade(&weak) else {
                return;
            };
            if let Ok(Some(lsn)) =
                position(&mut primary_connection, &primary, PRIMARY_POSITION).await
            {
                set.sample_primary(lsn, Instant::now());
            }
            for (replica, connection) in connections.iter_mut().enumerate() {
                match position(connection, set.options(replica), REPLAYED_POSITION).await {
                    Ok(replayed) => set.observe(replica, replayed, Instant::now()),
                    Err(error) => {
                        let error = crate::StorageError::from(error);
                        tracing::debug!(error = %crate::Logged(&error), "read replica poll failed");
                        set.set_state(replica, ReplicaState::Unreachable);
                    }
                }
            }
        }
    });
}

/// Runs a one-value position query on `connection`, connecting first if needed; a failure
/// drops the connection so the next poll connects again. (Boxed: the spawned poll loop must
/// be `Send` for every lifetime, which sqlx's executor futures cannot prove unboxed.)
fn position<'a>(
    connection: &'a mut Option<PgConnection>,
    options: &'a PgConnectOptions,
    sql: &'static str,
) -> futures_util::future::BoxFuture<'a, Result<Option<Lsn>, sqlx::Error>> {
    Box::pin(async move {
        let outcome = tokio::time::timeout(POLL_TIMEOUT, async {
            if connection.is_none() {
                *connection = Some(options.connect().await?);
            }
            let Some(conn) = connection.as_mut() else {
                unreachable!("connected above");
            };
            // A plain string: the simple protocol, one message.
            let row = sqlx::Executor::fetch_one(conn, sql).await?;
            let lsn: Option<i64> = row.try_get(0)?;
            Ok(lsn.map(|lsn| lsn as Lsn))
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        if outcome.is_err() {
            *connection = None;
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(max_lag_ms: u64) -> ReplicaSet {
        let options = PgConnectOptions::new()
            .host("replica")
            .port(5433)
            .database("db");
        ReplicaSet::new(vec![options], Duration::from_millis(max_lag_ms))
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_yet_replayed() {
        let set = set(1_000);
        let t0 = Instant::now();
        set.sample_primary(100, t0);
        set.sample_primary(200, t0 + Duration::from_millis(300));
        set.sample_primary(200, t0 + Duration::from_millis(600)); // idle: no new sample
        let now = t0 + Duration::from_millis(700);
        assert_eq!(set.lag_of(200, now), Duration::ZERO);
        assert_eq!(set.lag_of(150, now), Duration::from_millis(400));
        assert_eq!(set.lag_of(50, now), Duration::from_millis(700));
    }

    #[test]
    fn a_replica_serves_within_its_lag_limit_and_only_reads_it_has_replayed() {
        let set = set(500);
        let t0 = Instant::now();
        assert_eq!(set.choose(0), Err(PrimaryRead::NoReplica), "not polled yet");
        set.sample_primary(100, t0);
        set.observe(0, Some(100), t0 + Duration::from_millis(10));
        assert_eq!(set.choose(100), Ok(0));
        assert_eq!(set.choose(101), Err(PrimaryRead::Stale));
        set.sample_primary(300, t0 + Duration::from_millis(20));
        set.observe(0, Some(100), t0 + Duration::from_millis(600));
        assert_eq!(set.status()[0].state, ReplicaState::Lagging);
        assert_eq!(set.choose(0), Err(PrimaryRead::NoReplica));
        assert_eq!(set.status()[0].taken_out, 1);
        set.observe(0, Some(300), t0 + Duration::from_millis(650));
        assert_eq!(set.choose(300), Ok(0));
        set.observe(0, None, t0 + Duration::from_millis(700));
        assert_eq!(set.status()[0].state, ReplicaState::NotAStandby);
        assert_eq!(set.status()[0].taken_out, 2);
    }
}
