//! One bounded cache (moka: TinyLFU admission, TTL backstop, single-flight loads, bounded by
//! weight), its settings and its statistics.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;

/// Limits of one cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Off: every response lookup loads (for measuring the database path); the attribute
    /// catalog stays cached.
    pub enabled: bool,
    /// Upper bound of the weighted size (bytes for responses).
    pub max_bytes: u64,
    /// A backstop: entries are dropped this long after insertion even if no invalidation came.
    pub ttl: Duration,
    /// How long after invalidations stopped being heard a cached answer may still stand in
    /// for a database that cannot answer (never beyond `ttl`).
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(300),
            stale_if_error: Duration::from_secs(120),
        }
    }
}

/// Hits, misses and evictions of one cache since start.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

impl CacheStats {
    /// Counts a lookup: a hit when it found something.
    pub(crate) fn count<T>(&self, found: Option<T>) -> Option<T> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
}

/// A copy of the counters and the current size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub weighted_size: u64,
}

/// Whether a lookup was answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// The database could not answer while invalidations could not be heard: a cached answer
    /// that may have missed one stood in (see [`AttributeCaches::hold_unconfirmed`]).
    Stale,
}

/// A load's failure that a cached answer may stand in for: the database could not be reached
/// or could not take the read (RFC 5861's stale-if-error). Failures caused by the request
/// never qualify.
pub trait StandIn {
    fn database_unavailable(&self) -> bool;
}

/// One moka cache with counters; built only through [`BoundedCache::new`], the one factory.
#[derive(Clone)]
pub struct BoundedCache<K, V> {
    /// Keys hashed with foldhash, seeded at random per process as std's SipHash is, at a
    /// fraction of its instructions: every read hashes its key.
    pub(crate) inner: Cache<K, V, foldhash::fast::RandomState>,
    pub(crate) stats: Arc<CacheStats>,
    pub(crate) enabled: bool,
}

impl<K, V> std::fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedCache")
            .field("enabled", &self.enabled)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<K, V> BoundedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(settings: CacheSettings, weigher: fn(&K, &V) -> u32) -> Self {
        let stats = Arc::new(CacheStats::default());
        let evictions = Arc::clone(&stats);
        let inner = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(weigher)
            .time_to_live(settings.ttl)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _value, cause| {
                // Explicit invalidation is not an eviction; size and TTL pressure are.
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            inner,
            stats,
            enabled: settings.enabled,
        }
    }

    /// The cached value, or the one `load` produces. Concurrent misses on one key run `load`
    /// once; the others wait for it and count as hits (they cause no load).
    pub async fn get_or_try_load<E, F, L>(&self, key: K, load: L) -> Result<(V, Lookup), Arc<E>>
    where
        L: FnOnce() -> F,
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        if !self.enabled {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return load().await.map(|v| (v, Lookup::Miss)).map_err(Arc::new);
        }
        if let Some(value) = self.inner.get(&key).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((value, Lookup::Hit));
        }
        // The load is made only on a miss, and boxed: a hit neither builds nor moves its
        // (large) state, which profiling showed as a tenth of a cached read's CPU in memcpy.
        let load = Box::pin(load());
        let entry = self.inner.entry(key).or_try_insert_with(load).await?;
        let lookup = if entry.is_fresh() {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        let counter = if lookup == Lookup::Hit {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok((entry.into_value(), lookup))
    }

    /// The cached value, counting nothing.
    pub async fn peek(&self, key: &K) -> Option<V> {
        if self.enabled {
            self.inner.get(key).await
        } else {
            None
        }
    }

    /// The cached value, counting a hit or a miss.
    pub async fn get(&self, key: &K) -> Option<V> {
        let found = if self.enabled {
            self.inner.get(key).await
        } else {
            None
        };
        self.stats.count(found)
    }

    pub async fn insert(&self, key: K, value: V) {
        if self.enabled {
            self.inner.insert(key, value).await;
        }
    }

    pub async fn invalidate(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    pub(crate) fn invalidate_if(&self, predicate: impl Fn(&K) -> bool + Send + Sync + 'static) {
        // Only fails when closures are not enabled, and the factory enables them.
        let _ = self
            .inner
            .invalidate_entries_if(move |key, _| predicate(key));
    }

    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
            evictions: self.stats.evictions.load(Ordering::Relaxed),
            entries: self.inner.entry_count(),
            weighted_size: self.inner.weighted_size(),
        }
    }
}
