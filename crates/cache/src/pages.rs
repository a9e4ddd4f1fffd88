//! Entity responses packed by page: one moka entry holds the cached responses of up to
//! [`PAGE`] entities with neighbouring ids, their bodies in one buffer, compressed.
//!
//! A moka entry costs about 800 bytes of resident memory besides its value (measured, see
//! [`crate::RESPONSE_ENTRY_OVERHEAD`]), twice the body of a listing's values: one entry per
//! listing kept a third of the hot set of a Zipf workload in 64 MB. Per page, that cost is
//! shared by the listings of the page that are cached; a listing adds its compressed body
//! and a [`Slot`]. Pages are changed only through `and_compute_with`, which moka runs one at a time
//! per key, so an insertion and a removal in one page never lose each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use domain::{EntityKind, Language};
use flags::Store;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;

use crate::{
    CacheSettings, CacheStats, CachedResponse, Fingerprint, RESPONSE_ENTRY_OVERHEAD, ResponseKey,
    Scope, StatsSnapshot, View,
};

/// Entities per page: ids `PAGE * n .. PAGE * (n + 1)` share an entry.
pub const PAGE: i64 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PageKey {
    pub(crate) kind: EntityKind,
    pub(crate) page: i64,
    pub(crate) view: View,
    pub(crate) store: Store,
    pub(crate) language: Option<Language>,
}

impl PageKey {
    /// The page of an entity response and the entity's slot in it; `None` for other scopes.
    fn of(key: &ResponseKey) -> Option<(PageKey, u8)> {
        let Scope::Entity(kind, id) = key.scope else {
            return None;
        };
        let page = PageKey {
            kind,
            page: id.div_euclid(PAGE),
            view: key.view,
            store: key.store,
            language: key.language,
        };
        Some((page, id.rem_euclid(PAGE) as u8))
    }

    /// Whether the page holds any id of `first..=last`.
    pub(crate) fn overlaps(&self, first: i64, last: i64) -> bool {
        let start = self.page * PAGE;
        start <= last && first < start + PAGE
    }
}

/// One cached response in a page: where its stored body lies in the page's buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    slot: u8,
    start: u32,
    /// Bytes stored: the body as is for the anchor, else LZ4-compressed against the anchor.
    stored: u32,
    /// Bytes of the body as sent.
    len: u32,
    hash: u64,
    served_by: flags::ServedBy,
    epoch: u16,
}

/// A page: the anchor's body is kept as is; every other body is LZ4-compressed with the
/// anchor's body as dictionary. The bodies of one marketplace's listings share most of their
/// text (codes, option values, the JSON around them): against another listing's body, a body
/// compresses to about a third, alone to about two thirds.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// Sorted by slot.
    slots: Box<[Slot]>,
    /// Index in `slots` of the anchor.
    anchor: usize,
    bodies: Bytes,
}

impl Page {
    fn stored(&self, s: &Slot) -> &[u8] {
        &self.bodies[s.start as usize..(s.start + s.stored) as usize]
    }

    fn dictionary(&self) -> &[u8] {
        self.slots.get(self.anchor).map_or(&[], |s| self.stored(s))
    }

    fn body(&self, index: usize) -> Option<Bytes> {
        let s = &self.slots[index];
        if index == self.anchor {
            let start = s.start as usize;
            return Some(self.bodies.slice(start..start + s.len as usize));
        }
        lz4_flex::block::decompress_with_dict(self.stored(s), s.len as usize, self.dictionary())
            .ok()
            .map(Bytes::from)
    }

    fn get(&self, slot: u8) -> Option<CachedResponse> {
        let index = self.slots.binary_search_by_key(&slot, |s| s.slot).ok()?;
        let s = self.slots[index];
        Some(CachedResponse {
            body: self.body(index)?,
            fingerprint: Fingerprint {
                hash: s.hash,
                len: s.len as usize,
            },
            served_by: s.served_by,
            epoch: s.epoch,
        })
    }

    /// This page with `put` in its slot (in place of what that slot held), and without the slot
    /// `drop` names. While the anchor stays, the other bodies are copied as they are stored and
    /// only the new one is compressed; a new anchor means compressing every body again.
    fn rebuilt(&self, put: Option<(u8, &CachedResponse)>, drop: Option<u8>) -> Page {
        let replaced = |slot: u8| Some(slot) == drop || Some(slot) == put.map(|(s, _)| s);
        let anchor_stays = self
            .slots
            .get(self.anchor)
            .is_some_and(|anchor| !replaced(anchor.slot));
        let mut bodies = BytesMut::new();
        let mut slots = Vec::with_capacity(self.slots.len() + 1);
        if anchor_stays {
            for s in self.slots.iter().filter(|s| !replaced(s.slot)) {
                slots.push(Slot {
                    start: bodies.len() as u32,
                    ..*s
                });
                bodies.extend_from_slice(self.stored(s));
            }
            if let Some((slot, response)) = put {
                let compressed =
                    lz4_flex::block::compress_with_dict(&response.body, self.dictionary());
                slots.push(Slot {
                    slot,
                    start: bodies.len() as u32,
                    stored: compressed.len() as u32,
                    len: response.body.len() as u32,
                    hash: response.fingerprint.hash,
                    served_by: response.served_by,
                    epoch: response.epoch,
                });
                bodies.extend_from_slice(&compressed);
            }
        } else {
            // Every body as sent, the new one first: it becomes the anchor.
            let mut plain: Vec<(Slot, Bytes)> = put
                .map(|(slot, response)| {
                    let s = Slot {
                        slot,
                        start: 0,
                        stored: 0,
                        len: response.body.len() as u32,
                        hash: response.fingerprint.hash,
                        served_by: response.served_by,
                        epoch: response.epoch,
                    };
                    (s, response.body.clone())
                })
                .into_iter()
                .collect();
            for (index, s) in self.slots.iter().enumerate() {
                if !replaced(s.slot)
                    && let Some(body) = self.body(index)
                {
                    plain.push((*s, body));
                }
            }
            let dictionary = plain
                .first()
                .map(|(_, body)| body.clone())
                .unwrap_or_default();
            for (index, (s, body)) in plain.iter().enumerate() {
                let stored = if index == 0 {
                    body.to_vec()
                } else {
                    lz4_flex::block::compress_with_dict(body, &dictionary)
                };
                slots.push(Slot {
                    start: bodies.len() as u32,
                    stored: stored.len() as u32,
                    ..*s
                });
                bodies.extend_from_slice(&stored);
            }
        }
        let anchor_slot = if anchor_stays {
            self.slots[self.anchor].slot
        } else {
            slots.first().map_or(0, |s| s.slot)
        };
        slots.sort_unstable_by_key(|s| s.slot);
        Page {
            anchor: slots
                .iter()
                .position(|s| s.slot == anchor_slot)
                .unwrap_or(0),
            slots: slots.into_boxed_slice(),
            bodies: bodies.freeze(),
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Resident bytes: the stored bodies, the slots, and moka's entry.
    fn weight(&self) -> u32 {
        let bytes = self.bodies.len()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + RESPONSE_ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The entity responses, paged; counts hits, misses and evictions per entity.
#[derive(Clone)]
pub(crate) struct EntityPages {
    inner: Cache<PageKey, Arc<Page>, foldhash::fast::RandomState>,
    stats: Arc<CacheStats>,
    /// Entity responses resident now (moka counts pages).
    entities: Arc<AtomicU64>,
    enabled: bool,
}

impl std::fmt::Debug for EntityPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityPages")
            .field("enabled", &self.enabled)
            .field("entities", &self.entities)
            .finish_non_exhaustive()
    }
}

impl EntityPages {
    pub(crate) fn new(settings: CacheSettings) -> Self {
        let stats = Arc::new(CacheStats::default());
        let entities = Arc::new(AtomicU64::new(0));
        let (listener_stats, listener_entities) = (Arc::clone(&stats), Arc::clone(&entities));
        let inner = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_, page: &Arc<Page>| page.weight())
            .time_to_live(settings.ttl)
            .support_invalidation_closures()
            .eviction_listener(move |_key, page: Arc<Page>, cause| {
                // Every page that leaves takes its entities with it (a replaced page's
                // successor added its own when it was put).
                listener_entities.fetch_sub(page.len(), Ordering::Relaxed);
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    listener_stats
                        .evictions
                        .fetch_add(page.len(), Ordering::Relaxed);
                }
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            inner,
            stats,
            entities,
            enabled: settings.enabled,
        }
    }

    /// The cached response of an entity key, counting a hit or a miss.
    pub(crate) async fn get(&self, key: &ResponseKey) -> Option<CachedResponse> {
        let found = match PageKey::of(key) {
            Some((page, slot)) if self.enabled => {
                self.inner.get(&page).await.and_then(|p| p.get(slot))
            }
            _ => None,
        };
        self.stats.count(found)
    }

    pub(crate) async fn insert(&self, key: &ResponseKey, response: &CachedResponse) {
        let Some((page, slot)) = PageKey::of(key).filter(|_| self.enabled) else {
            return;
        };
        let entities = Arc::clone(&self.entities);
        self.inner
            .entry(page)
            .and_compute_with(|current| {
                let old = current.map(|entry| entry.into_value());
                let new = old
                    .as_deref()
                    .unwrap_or(&Page::default())
                    .rebuilt(Some((slot, response)), None);
                entities.fetch_add(new.len(), Ordering::Relaxed);
                std::future::ready(Op::Put(Arc::new(new)))
            })
            .await;
    }

    /// Drops one entity's response from its page.
    pub(crate) async fn remove(&self, key: &ResponseKey) {
        let Some((page, slot)) = PageKey::of(key) else {
            return;
        };
        // A write drops its entity under every view, store and language (16 keys, twice with
        // the NOTIFY echo), most never cached: a page that is not there needs no lock. Absent
        // now is what the compute below would find, with the same effect.
        if !self.inner.contains_key(&page) {
            return;
        }
        let entities = Arc::clone(&self.entities);
        self.inner
            .entry(page)
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) if entry.value().get(slot).is_some() => {
                        let rest = entry.value().rebuilt(None, Some(slot));
                        if rest.len() == 0 {
                            Op::Remove
                        } else {
                            entities.fetch_add(rest.len(), Ordering::Relaxed);
                            Op::Put(Arc::new(rest))
                        }
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    pub(crate) fn invalidate_if(
        &self,
        predicate: impl Fn(&PageKey) -> bool + Send + Sync + 'static,
    ) {
        // Only fails when closures are not enabled, and `new` enables them.
        let _ = self
            .inner
            .invalidate_entries_if(move |key, _| predicate(key));
    }

    pub(crate) fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
            evictions: self.stats.evictions.load(Ordering::Relaxed),
            entries: self.entities.load(Ordering::Relaxed),
            weighted_size: self.inner.weighted_size(),
        }
    }

    /// The cached response, counting nothing.
    pub(crate) async fn peek(&self, key: &ResponseKey) -> Option<CachedResponse> {
        let (page, slot) = PageKey::of(key)?;
        self.inner.get(&page).await.and_then(|p| p.get(slot))
    }

    #[cfg(test)]
    pub(crate) async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }
}
