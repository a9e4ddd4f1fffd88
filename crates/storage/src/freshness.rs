//! Which WAL position a read replica must have replayed before it may answer a read.
//!
//! Every invalidation this process applies is recorded with a WAL position at or after the
//! commit that caused it: the writer's own position, taken after its commit, or the primary's
//! position when the listener heard the `NOTIFY` (delivered only after the commit). A cache miss
//! then asks [`Freshness::required`] for its scope: a replica that has replayed less could
//! answer from before the write, so the read goes to the primary instead. The cache entry the
//! invalidation dropped can therefore never be filled again from before the write.
//!
//! Records are kept for [`RETENTION`]; when one ages out, its position becomes the floor every
//! read requires. A replica serving reads lags far less than that (it is taken out beyond its
//! lag limit), so the floor costs nothing while it keeps the memory bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::{EntityKind, EntityRef, Invalidation};

/// How long one invalidation's position is remembered by its scope.
pub(crate) const RETENTION: Duration = Duration::from_secs(30);

/// How often records under the floor are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// A WAL position, as bytes from `0/0` (`pg_wal_lsn_diff(lsn, '0/0')`).
pub(crate) type Lsn = u64;

/// What a routed read reads, so that only the writes that could change it hold it back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadScope<'a> {
    Entity(EntityRef),
    Listings(&'a [i64]),
    /// A category's effective schema.
    Category(i64),
    /// The value ranges of a category's subtree.
    Ranges(i64),
    Catalog,
    /// Data the service never writes (the marketplace's categories).
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Entity(EntityKind, i64),
    Category(i64),
    Ranges(i64),
}

#[derive(Debug, Default)]
struct Positions {
    /// Every read requires this: the newest position that aged out, or everything after a
    /// listener lost its connection (`Lsn::MAX` until it is back).
    floor: Lsn,
    keys: HashMap<Key, Lsn>,
    entity_ranges: Vec<(EntityKind, i64, i64, Lsn)>,
    everything: Lsn,
    catalog: Lsn,
    all_values: Lsn,
    all_ranges: Lsn,
    /// When each record was made, oldest first, for aging out.
    log: VecDeque<(Instant, Lsn)>,
    /// The floor to return to once a lost listener is back.
    floor_before_loss: Option<Lsn>,
    /// When records under the floor were last dropped from `keys` and `entity_ranges`.
    pruned_at: Option<Instant>,
}

/// The positions recent invalidations require, by scope. Shared by every worker of a process.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    positions: Mutex<Positions>,
}

impl Freshness {
    /// Before the process listens for invalidations it knows nothing of what committed
    /// earlier (a schema a replica has not replayed yet, a write of another process): every
    /// read goes to the primary until the listener says from which position on it heard all
    /// ([`Freshness::resumed`]).
    pub(crate) fn not_yet_listening() -> Self {
        let freshness = Self::default();
        freshness.lost();
        freshness
    }

    /// Records that `invalidations` committed at or before `lsn`.
    pub(crate) fn record(&self, invalidations: &[Invalidation], lsn: Lsn) {
        self.record_at(invalidations, lsn, Instant::now());
    }

    fn record_at(&self, invalidations: &[Invalidation], lsn: Lsn, now: Instant) {
        let mut p = self.lock();
        p.age_out(now);
        let raise = |slot: &mut Lsn| *slot = (*slot).max(lsn);
        for invalidation in invalidations {
            match invalidation {
                Invalidation::Entity { kind, id } => {
                    raise(p.keys.entry(Key::Entity(*kind, *id)).or_default())
                }
                Invalidation::Categories { ids } => {
                    for id in ids {
                        raise(p.keys.entry(Key::Category(*id)).or_default());
                    }
                }
                Invalidation::Ranges { ids } => {
                    for id in ids {
                        raise(p.keys.entry(Key::Ranges(*id)).or_default());
                    }
                }
                Invalidation::Catalog => raise(&mut p.catalog),
                Invalidation::EntityRange { kind, first, last } => {
                    p.entity_ranges.push((*kind, *first, *last, lsn))
                }
                Invalidation::AllValues => raise(&mut p.all_values),
                Invalidation::AllRanges => raise(&mut p.all_ranges),
                Invalidation::Everything => raise(&mut p.everything),
            }
        }
        p.log.push_back((now, lsn));
    }

    /// The position a replica must have replayed to answer a read of `scope`.
    pub(crate) fn required(&self, scope: ReadScope<'_>) -> Lsn {
        self.required_at(scope, Instant::now())
    }

    fn required_at(&self, scope: ReadScope<'_>, now: Instant) -> Lsn {
        let mut p = self.lock();
        p.age_out(now);
        let key = |key: Key| p.keys.get(&key).copied().unwrap_or(0);
        let entity = |kind: EntityKind, id: i64| {
            let in_ranges = p
                .entity_ranges
                .iter()
                .filter(|(k, first, last, _)| *k == kind && (*first..=*last).contains(&id))
                .map(|(.., lsn)| *lsn)
                .max()
                .unwrap_or(0);
            key(Key::Entity(kind, id)).max(in_ranges)
        };
        let base = p.floor.max(p.everything);
        match scope {
            ReadScope::Entity(e) => base
                .max(p.catalog)
                .max(p.all_values)
                .max(entity(e.kind, e.id)),
            ReadScope::Listings(ids) => ids
                .iter()
                .map(|id| entity(EntityKind::Listing, *id))
                .fold(base.max(p.catalog).max(p.all_values), Lsn::max),
            ReadScope::Category(id) => base.max(p.catalog).max(key(Key::Category(id))),
            // A category's invalidation drops its ranges too (defaults of the bound attributes).
            ReadScope::Ranges(id) => base
                .max(p.catalog)
                .max(p.all_ranges)
                .max(key(Key::Ranges(id)))
                .max(key(Key::Category(id))),
            ReadScope::Catalog => base.max(p.catalog),
            ReadScope::Shared => base,
        }
    }

    /// The listener lost its connection: invalidations may be missed, so no replica answers
    /// until [`Freshness::resumed`] says from which position on nothing was missed.
    pub(crate) fn lost(&self) {
        let mut p = self.lock();
        if p.floor_before_loss.is_none() {
            p.floor_before_loss = Some(p.floor);
        }
        p.floor = Lsn::MAX;
    }

    /// The listener listens again; whatever it missed committed before `lsn`.
    pub(crate) fn resumed(&self, lsn: Lsn) {
        let mut p = self.lock();
        let before = p.floor_before_loss.take().unwrap_or(p.floor);
        p.floor = before.max(lsn);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Positions {
    fn age_out(&mut self, now: Instant) {
        let mut aged = None;
        while let Some(&(at, lsn)) = self.log.front() {
            if now.saturating_duration_since(at) < RETENTION {
                break;
            }
            self.log.pop_front();
            aged = Some(aged.unwrap_or(0).max(lsn));
        }
        let Some(aged) = aged else { return };
        match &mut self.floor_before_loss {
            Some(before) => *before = (*before).max(aged),
            None => self.floor = self.floor.max(aged),
        }
        // Records under the floor no longer matter to any read; dropping them walks every
        // record, so it is done at most once a second, not on every read and write.
        if self
            .pruned_at
            .is_some_and(|at| now.saturating_duration_since(at) < PRUNE_EVERY)
        {
            return;
        }
        self.pruned_at = Some(now);
        let floor = self.floor_before_loss.unwrap_or(self.floor);
        self.keys.retain(|_, lsn| *lsn > floor);
        self.entity_ranges.retain(|(.., lsn)| *lsn > floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(id: i64) -> Invalidation {
        Invalidation::entity(EntityRef::listing(id))
    }

    #[test]
    fn before_the_listener_listens_no_read_may_go_to_a_replica() {
        // A replica can be behind the schema itself when the process starts: a category read
        // with no write recorded went to it and found no table.
        let freshness = Freshness::not_yet_listening();
        assert_eq!(freshness.required(ReadScope::Category(1311)), Lsn::MAX);
        assert_eq!(freshness.required(ReadScope::Shared), Lsn::MAX);
        freshness.resumed(5_540_512_480);
        assert_eq!(freshness.required(ReadScope::Category(1311)), 5_540_512_480);
        freshness.record(&[listing(6)], 5_591_355_408);
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::listing(6))),
            5_591_355_408
        );
    }

    #[test]
    fn a_read_requires_the_position_of_the_last_write_to_its_scope_only() {
        let freshness = Freshness::default();
        freshness.record(&[listing(7)], 100);
        freshness.record(&[listing(7)], 90); // heard late: never lowers
        freshness.record(&[Invalidation::Categories { ids: vec![3] }], 200);
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::listing(7))),
            100
        );
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::listing(8))),
            0
        );
        assert_eq!(freshness.required(ReadScope::Listings(&[8, 7, 9])), 100);
        assert_eq!(freshness.required(ReadScope::Category(3)), 200);
        assert_eq!(freshness.required(ReadScope::Ranges(3)), 200);
        assert_eq!(freshness.required(ReadScope::Category(4)), 0);
        assert_eq!(freshness.required(ReadScope::Shared), 0);
    }

    #[test]
    fn ranges_and_global_invalidations_cover_every_read_they_drop() {
        let freshness = Freshness::default();
        freshness.record(
            &[Invalidation::EntityRange {
                kind: EntityKind::Listing,
                first: 10,
                last: 20,
            }],
            50,
        );
        assert_eq!(freshness.required(ReadScope::Listings(&[15])), 50);
        assert_eq!(freshness.required(ReadScope::Listings(&[21])), 0);
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::product(15))),
            0
        );
        freshness.record(&[Invalidation::Catalog], 60);
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::product(15))),
            60
        );
        assert_eq!(freshness.required(ReadScope::Shared), 0);
        freshness.record(&[Invalidation::Everything], 70);
        assert_eq!(freshness.required(ReadScope::Shared), 70);
    }

    #[test]
    fn an_aged_out_record_becomes_the_floor_of_every_read() {
        let freshness = Freshness::default();
        let start = Instant::now();
        freshness.record_at(&[listing(1)], 100, start);
        freshness.record_at(&[listing(2)], 200, start + Duration::from_secs(20));
        let later = start + RETENTION + Duration::from_secs(1);
        assert_eq!(
            freshness.required_at(ReadScope::Entity(EntityRef::listing(3)), later),
            100
        );
        assert_eq!(
            freshness.required_at(ReadScope::Entity(EntityRef::listing(2)), later),
            200
        );
        assert_eq!(freshness.lock().keys.len(), 1, "the aged-out key is gone");
    }

    #[test]
    fn while_the_listener_is_lost_no_replica_is_fresh_enough() {
        let freshness = Freshness::default();
        freshness.record(&[listing(1)], 100);
        freshness.lost();
        assert_eq!(freshness.required(ReadScope::Shared), Lsn::MAX);
        freshness.resumed(500);
        assert_eq!(freshness.required(ReadScope::Shared), 500);
        assert_eq!(
            freshness.required(ReadScope::Entity(EntityRef::listing(1))),
            500
        );
    }
}
