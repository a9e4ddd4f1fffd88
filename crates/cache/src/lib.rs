//! In-process caches of the service (moka: TinyLFU admission, TTL backstop, single-flight
//! loads, bounded by bytes) and their exact invalidation. Knows no HTTP and no SQL.
//!
//! [`AttributeCaches`] holds pre-serialized responses (what the API sends, with its ETag)
//! and the attribute catalog per store. Keys enumerate every variant of a scope (view, store,
//! language), so dropping a category or an entity drops exactly its entries.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::{Attribute, Invalidation, Language};
use flags::Store;

mod pages;
use pages::EntityPages;
pub use pages::PAGE;

mod bounded;
mod generations;
mod keys;

pub use bounded::{BoundedCache, CacheSettings, CacheStats, Lookup, StandIn, StatsSnapshot};
use generations::Generations;
pub use keys::{CachedResponse, Fingerprint, RESPONSE_ENTRY_OVERHEAD, ResponseKey, Scope, View};

/// Every cache of the service.
#[derive(Debug, Clone)]
pub struct AttributeCaches {
    /// Responses about categories (schemas, ranges), one entry each.
    pub responses: BoundedCache<ResponseKey, CachedResponse>,
    /// Responses about entities (values), packed by page: the hot set of a marketplace's
    /// listings is far larger than its categories.
    entities: EntityPages,
    pub catalogs: BoundedCache<Store, Arc<Vec<Attribute>>>,
    /// Category ids by slug (the v1 variant route names categories by slug). Only slugs that
    /// exist are kept; the categories are the marketplace's, so the TTL is the backstop.
    pub category_slugs: BoundedCache<String, i64>,
    generations: Arc<Generations>,
    unconfirmed: Arc<Unconfirmed>,
}

/// Whether every invalidation is being heard. While it is not (the listener lost its
/// connection), a cached answer may have missed one, so none is served as it is: each read
/// goes to the database, and only when the database cannot answer does the cached answer
/// stand in, for a bounded time from the loss (RFC 5861's stale-if-error), counted. Once
/// invalidations are heard again, the epoch moves on: an answer stored in an earlier epoch is
/// revalidated the same way at its next read, and then kept in the new one.
#[derive(Debug)]
struct Unconfirmed {
    /// Read on every lookup; `since` is consulted only when an answer may stand in.
    active: std::sync::atomic::AtomicBool,
    epoch: std::sync::atomic::AtomicU16,
    since: std::sync::Mutex<Option<std::time::Instant>>,
    bound: Duration,
    served: AtomicU64,
}

impl Unconfirmed {
    fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn epoch(&self) -> u16 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stored since invalidations were last heard again, and heard now.
    fn confirmed(&self, response: &CachedResponse) -> bool {
        !self.active() && response.epoch == self.epoch()
    }

    /// A stale answer may still stand in: the loss is younger than the bound.
    fn may_stand_in(&self) -> bool {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.is_some_and(|since| since.elapsed() <= self.bound)
    }
}

impl AttributeCaches {
    /// `settings.max_bytes` bounds the responses: an eighth for categories, the rest for
    /// entities.
    pub fn new(settings: CacheSettings) -> Self {
        let categories = settings.max_bytes / 8;
        Self {
            // Weight = body bytes plus the measured cost of an entry: the bound is memory.
            responses: BoundedCache::new(
                CacheSettings {
                    max_bytes: categories,
                    ..settings
                },
                |_, response| {
                    u32::try_from(response.body.len() + RESPONSE_ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                },
            ),
            entities: EntityPages::new(CacheSettings {
                max_bytes: settings.max_bytes - categories,
                ..settings
            }),
            // The catalog stays cached even with the response cache off: every value read
            // from legacy consults it, and it is small and invalidated exactly.
            catalogs: BoundedCache::new(
                CacheSettings {
                    enabled: true,
                    ..settings
                },
                |_, catalog| u32::try_from(catalog.len().saturating_mul(1024)).unwrap_or(u32::MAX),
            ),
            category_slugs: BoundedCache::new(settings, |slug, _| {
                u32::try_from(slug.len() + 64).unwrap_or(u32::MAX)
            }),
            generations: Arc::new(Generations::new()),
            unconfirmed: Arc::new(Unconfirmed {
                active: false.into(),
                since: std::sync::Mutex::new(None),
                epoch: 0.into(),
                bound: settings.stale_if_error.min(settings.ttl),
                served: AtomicU64::new(0),
            }),
        }
    }

    /// Invalidations may be missed from now on (the listener lost its connection): cached
    /// answers are revalidated on every read and stand in only when the database cannot
    /// answer. The catalogs, which writes read too, are loaded afresh until then.
    pub fn hold_unconfirmed(&self) {
        {
            let mut since = self
                .unconfirmed
                .since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !self.unconfirmed.active() {
                *since = Some(std::time::Instant::now());
            }
            self.unconfirmed.active.store(true, Ordering::Release);
        }
        self.generations.bump_global();
        self.catalogs.invalidate_all();
    }

    /// Invalidations are heard again: a new epoch. What was stored before (it may have missed
    /// one) is revalidated at its next read, before it answers as fresh; a load that ran
    /// across this is not kept.
    pub fn confirm(&self) {
        self.unconfirmed.epoch.fetch_add(1, Ordering::AcqRel);
        self.generations.bump_global();
        self.catalogs.invalidate_all();
        self.unconfirmed.active.store(false, Ordering::Release);
    }

    /// Whether cached answers are being revalidated (invalidations are not being heard).
    pub fn unconfirmed(&self) -> bool {
        self.unconfirmed.active()
    }

    /// Stale answers served since start, while the database could not answer.
    pub fn stale_served(&self) -> u64 {
        self.unconfirmed.served.load(Ordering::Relaxed)
    }

    /// A read of an answer that may have missed an invalidation: the database's answer,
    /// stored; when the database cannot answer, the cached one within the bound.
    async fn revalidate<E, F, L>(
        &self,
        key: ResponseKey,
        load: L,
    ) -> Result<(CachedResponse, Lookup), Arc<E>>
    where
        L: FnOnce() -> F,
        F: Future<Output = Result<CachedResponse, E>>,
        E: StandIn + Send + Sync + 'static,
    {
        let generation = self.generations.current(Some(&key.scope));
        match load().await {
            Ok(response) => {
                self.store_response(key, response.clone(), generation).await;
                Ok((response, Lookup::Miss))
            }
            Err(err) if err.database_unavailable() && self.unconfirmed.may_stand_in() => {
                let cached = if matches!(key.scope, Scope::Entity(..)) {
                    self.entities.peek(&key).await
                } else {
                    self.responses.peek(&key).await
                };
                match cached {
                    Some(stale) => {
                        self.unconfirmed.served.fetch_add(1, Ordering::Relaxed);
                        Ok((stale, Lookup::Stale))
                    }
                    None => Err(Arc::new(err)),
                }
            }
            Err(err) => Err(Arc::new(err)),
        }
    }

    /// A cached response, or the one `load` produces (single-flight). When a drop of the
    /// key's scope happened while `load` ran, the fresh entry is dropped again: it may
    /// predate the write that caused the drop.
    pub async fn response<E, F, L>(
        &self,
        key: ResponseKey,
        load: L,
    ) -> Result<(CachedResponse, Lookup), Arc<E>>
    where
        L: FnOnce() -> F,
        F: Future<Output = Result<CachedResponse, E>>,
        E: StandIn + Send + Sync + 'static,
    {
        if self.unconfirmed.active() {
            return self.revalidate(key, load).await;
        }
        let before = self.generations.current(Some(&key.scope));
        if matches!(key.scope, Scope::Entity(..)) {
            // Not single-flight: concurrent misses of one entity each load it (a load is one
            // indexed query), rather than wait behind a lock on a whole page.
            if let Some(response) = self.entities.get(&key).await {
                if self.unconfirmed.confirmed(&response) {
                    return Ok((response, Lookup::Hit));
                }
                return self.revalidate(key, load).await;
            }
            let response = load().await.map_err(Arc::new)?;
            self.store_response(key, response.clone(), before).await;
            return Ok((response, Lookup::Miss));
        }
        if let Some(response) = self.responses.peek(&key).await {
            if self.unconfirmed.confirmed(&response) {
                self.responses.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((response, Lookup::Hit));
            }
            return self.revalidate(key, load).await;
        }
        let epoch = self.unconfirmed.epoch();
        let stamped = || async move {
            load()
                .await
                .map(|response| CachedResponse { epoch, ..response })
        };
        let (response, lookup) = self.responses.get_or_try_load(key, stamped).await?;
        if lookup == Lookup::Miss && self.generations.current(Some(&key.scope)) != before {
            self.responses.invalidate(&key).await;
        }
        Ok((response, lookup))
    }

    /// Stores a response loaded outside [`AttributeCaches::response`] (batch reads), unless
    /// its scope was dropped since `generation` was taken.
    pub async fn store_response(
        &self,
        key: ResponseKey,
        response: CachedResponse,
        generation: (u64, u64),
    ) {
        let response = CachedResponse {
            epoch: self.unconfirmed.epoch(),
            ..response
        };
        if matches!(key.scope, Scope::Entity(..)) {
            self.entities.insert(&key, &response).await;
        } else {
            self.responses.insert(key, response).await;
        }
        if self.generations.current(Some(&key.scope)) != generation {
            self.forget(&key).await;
        }
    }

    /// A cached response, counting a hit or a miss (batch reads, which load many at once).
    /// What may have missed an invalidation is not returned (see [`AttributeCaches::hold_unconfirmed`]).
    pub async fn cached(&self, key: &ResponseKey) -> Option<CachedResponse> {
        if self.unconfirmed.active() {
            return None;
        }
        let found = if matches!(key.scope, Scope::Entity(..)) {
            self.entities.get(key).await
        } else {
            self.responses.get(key).await
        };
        found.filter(|response| self.unconfirmed.confirmed(response))
    }

    async fn forget(&self, key: &ResponseKey) {
        if matches!(key.scope, Scope::Entity(..)) {
            self.entities.remove(key).await;
        } else {
            self.responses.invalidate(key).await;
        }
    }

    /// Hits, misses and size of all cached responses (categories and entities): what the
    /// response cache's metrics report. Entries count entities, not pages.
    pub fn response_stats(&self) -> StatsSnapshot {
        let (categories, entities) = (self.responses.stats(), self.entities.stats());
        StatsSnapshot {
            hits: categories.hits + entities.hits,
            misses: categories.misses + entities.misses,
            evictions: categories.evictions + entities.evictions,
            entries: categories.entries + entities.entries,
            weighted_size: categories.weighted_size + entities.weighted_size,
        }
    }

    /// The generation to hand to [`AttributeCaches::store_response`], taken before loading.
    pub fn generation(&self, scope: &Scope) -> (u64, u64) {
        self.generations.current(Some(scope))
    }

    /// The catalog of a store, loaded once for concurrent misses; guarded like responses.
    pub async fn catalog<E, F, L>(
        &self,
        store: Store,
        load: L,
    ) -> Result<(Arc<Vec<Attribute>>, Lookup), Arc<E>>
    where
        L: FnOnce() -> F,
        F: Future<Output = Result<Arc<Vec<Attribute>>, E>>,
        E: Send + Sync + 'static,
    {
        if self.unconfirmed.active() {
            return load().await.map(|c| (c, Lookup::Miss)).map_err(Arc::new);
        }
        let before = self.generations.current(None);
        let (catalog, lookup) = self.catalogs.get_or_try_load(store, load).await?;
        if lookup == Lookup::Miss && self.generations.current(None) != before {
            self.catalogs.invalidate(&store).await;
        }
        Ok((catalog, lookup))
    }

    /// Drops exactly what `invalidation` names.
    pub async fn apply(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Entity { kind, id } => self.drop_scope(Scope::Entity(*kind, *id)).await,
            Invalidation::Categories { ids } => {
                for id in ids {
                    self.drop_scope(Scope::Category(*id)).await;
                    // The v1 ranges give defaults for the attributes the schema binds.
                    self.drop_scope(Scope::Ranges(*id)).await;
                }
            }
            Invalidation::Ranges { ids } => {
                for id in ids {
                    self.drop_scope(Scope::Ranges(*id)).await;
                }
            }
            Invalidation::Catalog => {
                self.generations.bump_global();
                self.catalogs.invalidate_all();
                // Variant attributes include axes bound to no category, and v1 listing values
                // carry their definitions: both come from the catalog.
                self.responses.invalidate_if(|key| key.view.uses_catalog());
                self.entities.invalidate_if(|key| key.view.uses_catalog());
            }
            Invalidation::EntityRange { kind, first, last } => {
                self.generations.bump_global();
                let (kind, first, last) = (*kind, *first, *last);
                // Whole pages: their neighbours outside the range are loaded again.
                self.entities
                    .invalidate_if(move |key| key.kind == kind && key.overlaps(first, last));
            }
            Invalidation::AllValues => {
                self.generations.bump_global();
                self.entities.invalidate_all();
            }
            Invalidation::AllRanges => {
                self.generations.bump_global();
                self.responses
                    .invalidate_if(|key| matches!(key.scope, Scope::Ranges(_)));
            }
            Invalidation::Everything => self.flush(),
        }
    }

    pub fn flush(&self) {
        self.generations.bump_global();
        self.responses.invalidate_all();
        self.entities.invalidate_all();
        self.catalogs.invalidate_all();
        self.category_slugs.invalidate_all();
    }

    async fn drop_scope(&self, scope: Scope) {
        self.generations.bump(&scope);
        let languages = [
            None,
            Some(Language::Sr),
            Some(Language::En),
            Some(Language::Ru),
        ];
        for view in View::of(scope) {
            for store in [Store::Legacy, Store::Unified] {
                for language in languages {
                    self.forget(&ResponseKey {
                        scope,
                        view: *view,
                        store,
                        language,
                    })
                    .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use domain::EntityKind;

    use super::*;

    fn response(text: &str) -> CachedResponse {
        CachedResponse {
            body: Bytes::from(text.to_owned()),
            fingerprint: Fingerprint::of(text.as_bytes()),
            served_by: flags::ServedBy::Legacy,
            epoch: 0,
        }
    }

    fn key(scope: Scope, view: View, language: Option<Language>) -> ResponseKey {
        ResponseKey {
            scope,
            view,
            store: Store::Unified,
            language,
        }
    }

    async fn cached(caches: &AttributeCaches, key: ResponseKey) -> bool {
        match key.scope {
            Scope::Entity(..) => caches.entities.peek(&key).await.is_some(),
            _ => caches.responses.inner.get(&key).await.is_some(),
        }
    }

    async fn put(caches: &AttributeCaches, key: ResponseKey, response: CachedResponse) {
        caches
            .store_response(key, response, caches.generation(&key.scope))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_load_once() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let k = key(Scope::Category(1311), View::Attributes, Some(Language::En));
        let mut lookups = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (loads, caches) = (Arc::clone(&loads), caches.clone());
            lookups.spawn(async move {
                caches
                    .responses
                    .get_or_try_load(k, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(response("schema"))
                    })
                    .await
                    .is_ok()
            });
        }
        assert!(lookups.join_all().await.into_iter().all(|ok| ok));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let stats = caches.responses.stats();
        assert_eq!((stats.hits, stats.misses), (15, 1));
    }

    #[tokio::test]
    async fn dropping_a_category_drops_every_view_and_language_of_it_and_nothing_else() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let mine = [
            key(Scope::Category(1311), View::Attributes, Some(Language::En)),
            key(Scope::Category(1311), View::V1Attributes, None),
            key(
                Scope::Category(1311),
                View::DetailedAttributes,
                Some(Language::Ru),
            ),
            key(
                Scope::Category(1311),
                View::V1VariantAttributes,
                Some(Language::Sr),
            ),
            // The v1 ranges give defaults for what the category binds.
            key(Scope::Ranges(1311), View::V1Ranges, None),
        ];
        let other = key(Scope::Category(1301), View::Attributes, Some(Language::En));
        let entity = key(Scope::Entity(EntityKind::Listing, 6), View::Values, None);
        for k in mine.iter().chain([&other, &entity]) {
            put(&caches, *k, response("x")).await;
        }
        caches
            .apply(&Invalidation::Categories { ids: vec![1311] })
            .await;
        for k in mine {
            assert!(!cached(&caches, k).await, "{k:?} survived");
        }
        assert!(cached(&caches, other).await && cached(&caches, entity).await);
    }

    #[tokio::test]
    async fn a_catalog_change_drops_the_views_built_with_the_catalog_only() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let with_catalog = [
            key(
                Scope::Entity(EntityKind::Listing, 6),
                View::V1Values,
                Some(Language::En),
            ),
            key(
                Scope::Category(1101),
                View::VariantAttributes,
                Some(Language::Sr),
            ),
            key(
                Scope::Category(1101),
                View::V1VariantAttributes,
                Some(Language::Sr),
            ),
        ];
        let without = [
            key(Scope::Entity(EntityKind::Listing, 6), View::Values, None),
            key(Scope::Category(1101), View::Attributes, Some(Language::Sr)),
        ];
        for k in with_catalog.iter().chain(&without) {
            put(&caches, *k, response("x")).await;
        }
        caches.apply(&Invalidation::Catalog).await;
        for k in with_catalog {
            assert!(!cached(&caches, k).await, "{k:?} survived");
        }
        for k in without {
            assert!(cached(&caches, k).await, "{k:?} was dropped");
        }
    }

    #[tokio::test]
    async fn an_entity_write_drops_that_entity_only() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let six = key(Scope::Entity(EntityKind::Listing, 6), View::Values, None);
        let seven = key(Scope::Entity(EntityKind::Listing, 7), View::Values, None);
        let product_six = key(Scope::Entity(EntityKind::Product, 6), View::Values, None);
        for k in [six, seven, product_six] {
            put(&caches, k, response("x")).await;
        }
        caches
            .apply(&Invalidation::Entity {
                kind: EntityKind::Listing,
                id: 6,
            })
            .await;
        assert!(!cached(&caches, six).await);
        assert!(cached(&caches, seven).await && cached(&caches, product_six).await);
        caches.apply(&Invalidation::AllValues).await;
        assert!(!cached(&caches, seven).await && !cached(&caches, product_six).await);
    }

    /// How a test's load fails: the database down, or the request refused.
    #[derive(Debug, PartialEq)]
    enum LoadError {
        Down,
        Refused,
    }

    impl StandIn for LoadError {
        fn database_unavailable(&self) -> bool {
            *self == LoadError::Down
        }
    }

    async fn lookup(
        caches: &AttributeCaches,
        k: ResponseKey,
        outcome: Result<&'static str, LoadError>,
    ) -> Result<(String, Lookup), Arc<LoadError>> {
        caches
            .response(k, || async move { outcome.map(response) })
            .await
            .map(|(r, lookup)| (String::from_utf8_lossy(&r.body).into_owned(), lookup))
    }

    #[tokio::test]
    async fn while_invalidations_are_unheard_a_cached_answer_stands_in_only_for_a_database_that_cannot_answer()
     {
        let caches = AttributeCaches::new(CacheSettings::default());
        for scope in [Scope::Category(1), Scope::Entity(EntityKind::Listing, 6)] {
            let k = key(scope, View::Attributes, None);
            put(&caches, k, response("before the outage")).await;
            caches.hold_unconfirmed();
            // The database answers: its answer, never the cached one (it may have missed a drop).
            assert_eq!(
                lookup(&caches, k, Ok("fresh")).await.expect("loads"),
                ("fresh".into(), Lookup::Miss)
            );
            assert_eq!(
                lookup(&caches, k, Err(LoadError::Down))
                    .await
                    .expect("stands in"),
                ("fresh".into(), Lookup::Stale)
            );
            assert!(
                caches.cached(&k).await.is_none(),
                "batch reads revalidate too"
            );
            // A failure of the request's own is never hidden.
            assert_eq!(
                *lookup(&caches, k, Err(LoadError::Refused))
                    .await
                    .expect_err("refused"),
                LoadError::Refused
            );
            // Listening again: what was stored before is revalidated at its next read (and
            // still stands in while the database cannot answer), then kept.
            caches.confirm();
            assert_eq!(
                lookup(&caches, k, Err(LoadError::Down))
                    .await
                    .expect("stands in"),
                ("fresh".into(), Lookup::Stale)
            );
            assert!(caches.cached(&k).await.is_none(), "not confirmed yet");
            assert_eq!(
                lookup(&caches, k, Ok("after")).await.expect("loads").1,
                Lookup::Miss
            );
            assert_eq!(
                lookup(&caches, k, Err(LoadError::Down)).await.expect("hit"),
                ("after".into(), Lookup::Hit)
            );
        }
        assert_eq!(caches.stale_served(), 4);
    }

    #[tokio::test]
    async fn a_cached_answer_stands_in_no_longer_than_the_bound() {
        let caches = AttributeCaches::new(CacheSettings {
            stale_if_error: Duration::ZERO,
            ..CacheSettings::default()
        });
        let k = key(Scope::Category(1), View::Attributes, None);
        put(&caches, k, response("before the outage")).await;
        caches.hold_unconfirmed();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(lookup(&caches, k, Err(LoadError::Down)).await.is_err());
        assert_eq!(caches.stale_served(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_that_ran_across_a_write_is_not_kept() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let k = key(Scope::Entity(EntityKind::Listing, 6), View::Values, None);
        let (started, start) = tokio::sync::oneshot::channel();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let loader = {
            let caches = caches.clone();
            tokio::spawn(async move {
                caches
                    .response(k, || async move {
                        let _ = started.send(());
                        let _ = finished.await;
                        Ok::<_, LoadError>(response("read before the write committed"))
                    })
                    .await
                    .is_ok()
            })
        };
        start.await.expect("the load started");
        caches
            .apply(&Invalidation::Entity {
                kind: EntityKind::Listing,
                id: 6,
            })
            .await;
        finish.send(()).expect("the load is waiting");
        assert!(loader.await.expect("joined"));
        assert!(
            !cached(&caches, k).await,
            "a stale load survived the write's invalidation"
        );
    }

    #[tokio::test]
    async fn a_range_invalidation_drops_the_pages_of_that_kind_in_that_range_only() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let listing = |id| key(Scope::Entity(EntityKind::Listing, id), View::Values, None);
        let product = key(Scope::Entity(EntityKind::Product, 15), View::Values, None);
        let category = key(Scope::Category(15), View::Attributes, None);
        for k in [
            listing(9),
            listing(10),
            listing(20),
            listing(47),
            listing(48),
            product,
            category,
        ] {
            put(&caches, k, response("x")).await;
        }
        caches
            .apply(&Invalidation::EntityRange {
                kind: EntityKind::Listing,
                first: 10,
                last: 20,
            })
            .await;
        caches.entities.run_pending_tasks().await;
        for (k, kept) in [
            // Pages are dropped whole: 9 shares the page of 10 (ids 0–15).
            (listing(9), false),
            (listing(10), false),
            (listing(20), false),
            (listing(47), true),
            (listing(48), true),
            (product, true),
            (category, true),
        ] {
            assert_eq!(cached(&caches, k).await, kept, "{k:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_insertions_into_one_page_all_land_and_removals_are_exact() {
        let caches = AttributeCaches::new(CacheSettings::default());
        let listing = |id| key(Scope::Entity(EntityKind::Listing, id), View::Values, None);
        let mut insertions = tokio::task::JoinSet::new();
        let body = |id: i64| {
            format!(
                r#"{{"entity_type":"listing","entity_id":{id},"values":[{{"code":"year","value":{}}},{{"code":"city","value":"Novi Sad"}}]}}"#,
                2000 + id
            )
        };
        for id in 0..PAGE {
            let caches = caches.clone();
            insertions.spawn(async move {
                put(&caches, listing(id), response(&body(id))).await;
            });
        }
        insertions.join_all().await;
        for id in 0..PAGE {
            let found = caches.entities.peek(&listing(id)).await.expect("cached");
            assert_eq!(found.body, body(id).as_bytes());
            assert_eq!(found.fingerprint, Fingerprint::of(&found.body));
        }
        caches.entities.run_pending_tasks().await;
        assert_eq!(caches.response_stats().entries, PAGE as u64);
        caches
            .apply(&Invalidation::Entity {
                kind: EntityKind::Listing,
                id: 3,
            })
            .await;
        caches.entities.run_pending_tasks().await;
        assert!(!cached(&caches, listing(3)).await);
        assert!(cached(&caches, listing(2)).await && cached(&caches, listing(4)).await);
        assert_eq!(caches.response_stats().entries, PAGE as u64 - 1);
        // Whichever body the others are compressed against, removing it keeps them all whole.
        for gone in (0..PAGE).filter(|id| id % 2 == 0) {
            caches
                .apply(&Invalidation::Entity {
                    kind: EntityKind::Listing,
                    id: gone,
                })
                .await;
            for id in (0..PAGE).filter(|id| *id > gone && *id != 3) {
                let found = caches.entities.peek(&listing(id)).await.expect("kept");
                assert_eq!(found.body, body(id).as_bytes(), "after {gone} left");
            }
        }
    }

    #[tokio::test]
    async fn the_byte_bound_holds_for_entities_and_a_page_shares_one_entry_overhead() {
        let max_bytes = 80_000;
        let caches = AttributeCaches::new(CacheSettings {
            max_bytes,
            ..CacheSettings::default()
        });
        let body = "x".repeat(400);
        for id in 0..2_000 {
            put(
                &caches,
                key(Scope::Entity(EntityKind::Listing, id), View::Values, None),
                response(&body),
            )
            .await;
        }
        caches.entities.run_pending_tasks().await;
        let stats = caches.entities.stats();
        assert!(stats.weighted_size <= max_bytes, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
        // Full pages: an entity costs its compressed body and a slot, plus a share of an entry.
        let per_entity = stats.weighted_size / stats.entries;
        assert!(
            per_entity < (400 + RESPONSE_ENTRY_OVERHEAD as u64) / 2,
            "{per_entity} bytes per entity: {stats:?}"
        );
    }

    #[tokio::test]
    async fn a_disabled_cache_always_loads() {
        let caches = AttributeCaches::new(CacheSettings {
            enabled: false,
            ..CacheSettings::default()
        });
        let k = key(Scope::Category(1), View::Attributes, None);
        for _ in 0..3 {
            let (_, lookup) = caches
                .responses
                .get_or_try_load(k, || async { Ok::<_, ()>(response("x")) })
                .await
                .expect("loads");
            assert_eq!(lookup, Lookup::Miss);
        }
        assert_eq!(caches.responses.stats().misses, 3);
    }

    #[tokio::test]
    async fn the_byte_bound_evicts() {
        let caches = AttributeCaches::new(CacheSettings {
            max_bytes: 10_000,
            ..CacheSettings::default()
        });
        for id in 0..200 {
            caches
                .responses
                .insert(
                    key(Scope::Category(id), View::Attributes, None),
                    response(&"x".repeat(500)),
                )
                .await;
        }
        caches.responses.inner.run_pending_tasks().await;
        let stats = caches.responses.stats();
        assert!(stats.weighted_size <= 10_000, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
        // An entry weighs its body and its overhead: the bound is memory, not body bytes.
        let most = 10_000 / (500 + RESPONSE_ENTRY_OVERHEAD as u64);
        assert!(stats.entries <= most, "at most {most}: {stats:?}");
    }
}
