//! What an uncached read costs PostgreSQL, counted on the wire: the storage talks to the
//! database through a TCP relay that counts round trips (each time the client speaks again
//! after the server answered), so a hidden second message per read cannot go unseen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use domain::{EntityKind, EntityRef};
use storage::demo::Dataset;
use storage::{PoolSettings, Storage, StorageError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{Backend, TestDb};
use crate::{LEGACY, UNIFIED, seeded};

/// A relay in front of PostgreSQL that counts the client's turns to speak.
struct CountingRelay {
    port: u16,
    round_trips: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&round_trips);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream)
                    .await
                    .expect("reach PostgreSQL");
                tokio::spawn(relay(client, server, Arc::clone(&counter)));
            }
        });
        Self {
            port,
            round_trips,
            task,
        }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, round_trips: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // True while the client has spoken and the server has not answered yet: bytes the client
    // sends then belong to the same turn (one message split over several reads).
    let client_speaking = Arc::new(AtomicBool::new(false));
    let speaking = Arc::clone(&client_speaking);
    let upstream = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !speaking.swap(true, Ordering::SeqCst) {
                round_trips.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Cleared before the client can see the answer, so its next message is a new turn.
            client_speaking.store(false, Ordering::SeqCst);
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(upstream, downstream);
}

/// The host and port of a database URL, and the URL with them replaced by the relay's.
fn relayed(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database name");
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    (
        format!("{scheme}://{user}127.0.0.1:{port}/{path}"),
        host.to_owned(),
    )
}

/// A fresh database seeded in both stores, and a storage that reaches it through a counting
/// relay on one connection: every statement after its first run finds itself prepared.
async fn seeded_through_relay() -> (TestDb, Dataset, CountingRelay, Storage) {
    let db = TestDb::fresh(Backend::Postgres).await;
    let (seeding, data) = seeded(&db, true).await;
    drop(seeding);
    let (_, upstream) = relayed(&db.url, 0);
    let relay = CountingRelay::start(upstream).await;
    let (url, _) = relayed(&db.url, relay.port);
    let storage = Storage::connect(&url, PoolSettings::new(1))
        .await
        .expect("connect through the relay");
    (db, data, relay, storage)
}

#[tokio::test]
async fn an_uncached_read_costs_postgresql_exactly_one_round_trip() {
    let (_db, data, relay, storage) = seeded_through_relay().await;
    let listings: Vec<EntityRef> = data
        .entities()
        .map(|(entity, _)| entity)
        .filter(|entity| entity.kind == EntityKind::Listing)
        .take(20)
        .collect();
    assert_eq!(listings.len(), 20, "the dataset has listings");
    let ids: Vec<i64> = listings.iter().map(|listing| listing.id).collect();
    for route in [LEGACY, UNIFIED] {
        // The first reads prepare their statements: not what a miss costs afterwards.
        storage
            .entity_values(listings[0], route)
            .await
            .expect("warm-up read");
        storage
            .listing_values_batch(&ids, route)
            .await
            .expect("warm-up batch");
        let before = relay.count();
        for listing in &listings {
            let read = storage.entity_values(*listing, route).await.expect("read");
            assert!(!read.data.is_empty(), "{listing:?} has values");
        }
        let singles = relay.count() - before;
        let before = relay.count();
        let batch = storage
            .listing_values_batch(&ids, route)
            .await
            .expect("batch read");
        assert_eq!(batch.data.len(), ids.len());
        assert_eq!(
            (singles, relay.count() - before),
            (listings.len() as u64, 1),
            "round trips of {} single reads, and of one batch read, from {:?}",
            listings.len(),
            route.store
        );
    }
    // A missing listing is an answer, not a broken connection: the next read reuses it.
    let before = relay.count();
    assert!(matches!(
        storage
            .entity_values(EntityRef::listing(999_999_999), LEGACY)
            .await,
        Err(StorageError::NotFound { .. })
    ));
    storage
        .entity_values(listings[1], LEGACY)
        .await
        .expect("read after a 404");
    assert_eq!(relay.count() - before, 2, "no reconnection after a 404");
}

#[tokio::test]
async fn a_read_connection_the_server_ended_is_replaced_not_reused() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let (storage, data) = seeded(&db, false).await;
    let listing = data
        .entities()
        .map(|(entity, _)| entity)
        .find(|entity| entity.kind == EntityKind::Listing)
        .expect("a listing");
    storage
        .entity_values(listing, LEGACY)
        .await
        .expect("first read");
    let raw = db.raw().await;
    let ended = raw
        .count(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await;
    assert!(ended >= 1, "the storage's connections were ended");
    // The connection learns it was ended on its next use: that read may fail, none after it.
    let mut failures = 0;
    for _ in 0..5 {
        match storage.entity_values(listing, LEGACY).await {
            Ok(read) => assert!(!read.data.is_empty()),
            Err(err) => {
                failures += 1;
                assert!(
                    err.is_transient() || matches!(err, StorageError::Database(_)),
                    "{err:?}"
                );
            }
        }
    }
    assert!(
        failures <= 1,
        "{failures} reads failed after the connection was replaced"
    );
    storage
        .entity_values(listing, LEGACY)
        .await
        .expect("a read on a new connection");
}

/// What a dual-write `PATCH` of one listing value and a `PUT` cost PostgreSQL on the wire, after
/// the statements are prepared: each turn is named below, so a turn added unnoticed fails here.
#[tokio::test]
async fn a_dual_write_costs_postgresql_its_named_round_trips() {
    let (_db, data, relay, storage) = seeded_through_relay().await;
    let cars: Vec<i64> = data
        .listings
        .iter()
        .filter(|listing| listing.category_id == 1311)
        .map(|listing| listing.id)
        .take(2)
        .collect();
    assert_eq!(cars.len(), 2, "the dataset has two cars");
    // The round trips of the same change to each car: the first prepares its statements.
    let turns = async |change: storage::ValuesChange<'_>| {
        let mut turns = Vec::new();
        for &car in &cars {
            let before = relay.count();
            storage
                .write_values(EntityRef::listing(car), change, flags::WriteMode::Dual)
                .await
                .expect("a dual write");
            // The connection's return to the pool (sqlx's `Sync`) completes after the write
            // returns: let it land in this write's count.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            turns.push(relay.count() - before);
        }
        turns
    };
    let patch = crate::object(serde_json::json!({"mileage": {"value": 120000, "unit": "km"}}));
    let patched = turns(storage::ValuesChange::Merge(&patch)).await;
    // BEGIN; the fence (migration state FOR SHARE, the stored flags; a dual write leaves the
    // evidence as it is); the listing's category FOR UPDATE; the category chain with its bindings
    // and definitions; the marketplace's own definitions bound in the chain; legacy's current
    // values (read once); legacy's delete and insert; unified's delete and insert; the
    // quarantine's forget; the marketplace's own definitions among the codes; the feed's row with
    // the replicas' NOTIFY; COMMIT; the pool's `Sync` on the connection's return. (Before: 21 —
    // legacy's values read twice, the feed and the NOTIFY apart, and three statements parsed
    // anew on every write.)
    assert_eq!(
        patched[1], 16,
        "round trips of a dual-write PATCH ({patched:?})"
    );
    // A PUT of three values costs what a PATCH of one does, plus unified's current values: each
    // store's rewrite is one statement whatever the number of values.
    let car_values = crate::car_values(2019);
    let put = turns(storage::ValuesChange::Replace(&car_values)).await;
    assert_eq!(put[1], 17, "round trips of a dual-write PUT ({put:?})");
}
