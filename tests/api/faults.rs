//! The database going away under a running service: reads answer 503 with `Retry-After` — at
//! once, without knocking on the database for every request — and the service recovers by
//! itself when the database is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

use crate::common::cluster::OwnServer;
use crate::common::{Backend, TestDb};
use crate::helpers::{TestApp, WRITER_TOKEN, settings_for, start};

/// A TCP proxy in front of PostgreSQL that can turn away every connection (accept, then
/// close at once, as a database that is down or restarting does) and counts the attempts.
struct Proxy {
    port: u16,
    refusing: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    open: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (refusing, attempts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let target = target.to_owned();
        let (refuse, count, sessions) = (refusing.clone(), attempts.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let session = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                sessions
                    .lock()
                    .expect("sessions")
                    .push(session.abort_handle());
            }
        });
        Self {
            port,
            refusing,
            attempts,
            open,
        }
    }

    /// The database "goes down": open sessions are cut, new ones turned away.
    fn go_down(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        for session in self.open.lock().expect("sessions").drain(..) {
            session.abort();
        }
    }

    fn come_back(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn with_the_database_gone_reads_fail_fast_without_knocking_and_recover_when_it_is_back() {
    let db = TestDb::fresh(Backend::Postgres).await;
    // Migrate and seed directly; the service reaches the database through the proxy.
    let _direct = start(&settings_for(&db, &[])).await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let proxied_url = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let mut proxied = db.share();
    proxied.url = proxied_url;
    let app = TestApp {
        address: start(&settings_for(&proxied, &[])).await,
        db: proxied,
        client: awc::Client::default(),
    };
    let cached = "/api/v2/marketplace/categories/1311/attributes";
    assert_eq!(app.get(cached).await.status, 200, "warm the cache");

    proxy.go_down();
    // The first uncached reads find the connections cut and the database refusing new ones.
    let mut listing = 1;
    for _ in 0..3 {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/listings/{listing}/attributes"
            ))
            .await;
        listing += 1;
        reply.assert_error(503, "errors.storageUnavailable");
    }
    // From here every uncached read answers 503 without a connection attempt: the breaker
    // is open (at most one probe slips through when it half-opens).
    let before = proxy.attempts.load(Ordering::SeqCst);
    for _ in 0..50 {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/listings/{listing}/attributes"
            ))
            .await;
        listing += 1;
        reply.assert_error(503, "errors.storageUnavailable");
        assert_eq!(reply.header("Retry-After"), Some("1"));
    }
    let failed = app
        .metric(
            "unified_attributes_errors_total{method=\"GET\",route=\"/api/v2/marketplace/listings/{id}/attributes\",status=\"5xx\"}",
        )
        .await;
    assert!(
        failed >= 50.0,
        "the 503s are the service's errors: {failed}"
    );
    let knocked = proxy.attempts.load(Ordering::SeqCst) - before;
    assert!(
        knocked <= 2,
        "{knocked} connection attempts for 50 reads while the database was down"
    );
    // (The cached category answer stands in meanwhile: see the test of a stopped server.)

    proxy.come_back();
    let mut recovered = false;
    for _ in 0..100 {
        let reply = app.get("/api/v2/marketplace/listings/6/attributes").await;
        if reply.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "reads answer again once the database is back");
}

/// A worker at its bound of requests in flight answers the next one 503 with `Retry-After` at
/// once — it does not queue it — and counts it; probes are still answered; the admitted
/// requests finish normally.
#[actix_web::test]
async fn beyond_its_bound_of_requests_in_flight_a_worker_sheds_at_once() {
    use crate::helpers::WRITER_TOKEN;
    let db = TestDb::fresh(Backend::Postgres).await;
    let mut settings = settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)]);
    settings.server.max_in_flight = 2;
    settings.database.lock_timeout_ms = 60_000;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let path = "/api/v2/marketplace/listings/6/attributes";
    let holder = sqlx::PgPool::connect(&app.db.sql_url())
        .await
        .expect("holder");
    let mut held = holder.begin().await.expect("begin");
    sqlx::query("SELECT id FROM marketplace_listings WHERE id = 6 FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("lock");
    // Two writes wait on the lock: the worker's two permits are taken.
    let mut writes = Vec::new();
    for year in [2016, 2017] {
        let (client, url) = (app.client.clone(), format!("{}{path}", app.address));
        writes.push(actix_web::rt::spawn(async move {
            client
                .patch(url)
                .insert_header(("Authorization", format!("Bearer {WRITER_TOKEN}")))
                .insert_header(("Content-Type", "application/json"))
                .send_body(format!(r#"{{"year": {year}}}"#))
                .await
                .expect("answered")
                .status()
                .as_u16()
        }));
    }
    assert_eq!(
        sessions_waiting_on_a_lock(&holder, 2).await,
        2,
        "both writes wait on the lock"
    );

    let shed = app
        .get("/api/v2/marketplace/categories/1311/attributes")
        .await;
    shed.assert_error(503, "errors.overloaded");
    assert_eq!(shed.header("Retry-After"), Some("1"));
    assert_eq!(
        app.get("/health/live").await.status,
        200,
        "probes are never shed"
    );
    assert_eq!(app.metric("unified_attributes_shed_total").await, 1.0);

    held.rollback().await.expect("release");
    for write in writes {
        assert_eq!(write.await.expect("joined"), 200);
    }
    assert_eq!(
        app.get("/api/v2/marketplace/categories/1311/attributes")
            .await
            .status,
        200,
        "permits come back"
    );
}

/// A client that sends a write's head and then trickles its body is answered 408 when the
/// body deadline passes, and nothing is written; the worker is free again.
/// With every read connection busy and enough reads queued for one, the next uncached read
/// is answered 503 with `Retry-After` at once and counted; the queued reads are served when
/// the database frees up.
#[actix_web::test]
async fn beyond_its_bound_of_queued_reads_a_worker_refuses_at_once() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let mut settings = settings_for(&db, &[]);
    settings.database.max_connections = 1;
    settings.database.lock_timeout_ms = 60_000;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let listing = |id: i64| format!("/api/v2/marketplace/listings/{id}/attributes");
    assert_eq!(
        app.get(&listing(1)).await.status,
        200,
        "the catalog is cached"
    );
    let holder = sqlx::PgPool::connect(&app.db.sql_url())
        .await
        .expect("holder");
    let mut held = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE listing_attribute_values IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .expect("lock");
    // One read holds the one connection (blocked on the lock), two wait for it.
    let mut reads = Vec::new();
    for id in 2..=4 {
        let (client, url) = (
            app.client.clone(),
            format!("{}{}", app.address, listing(id)),
        );
        reads.push(actix_web::rt::spawn(async move {
            client
                .get(url)
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16()
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        sessions_waiting_on_a_lock(&holder, 1).await,
        1,
        "one read waits on the lock"
    );

    let refused = app.get(&listing(7)).await;
    refused.assert_error(503, "errors.overloaded");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert_eq!(
        app.metric("unified_attributes_db_reads_refused_total")
            .await,
        1.0
    );
    held.rollback().await.expect("release");
    for read in reads {
        assert_eq!(read.await.expect("joined"), 200, "a queued read is served");
    }
    assert_eq!(app.get(&listing(7)).await.status, 200);
}

#[actix_web::test]
async fn a_client_trickling_a_body_is_cut_off_and_nothing_is_written() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::helpers::WRITER_TOKEN;
    let db = TestDb::fresh(Backend::Sqlite).await;
    let mut settings = settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)]);
    settings.server.request_body_timeout_ms = 500;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let before = app.listing_values(6).await;
    let body = r#"{"year": 2019}"#;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "PUT /api/v2/marketplace/listings/6/attributes HTTP/1.1\r\nHost: test\r\n\
         Authorization: Bearer {WRITER_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut reader, mut writer) = stream.into_split();
    let sent = AtomicUsize::new(0);
    let answered = AtomicBool::new(false);
    // One byte every 200 ms (the whole body would take about 3 s) until the answer comes.
    let trickle = async {
        for byte in body.as_bytes() {
            if answered.load(Ordering::SeqCst) || writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let read = async {
        let mut answer = vec![0_u8; 1024];
        let read = reader.read(&mut answer).await.expect("read");
        answered.store(true, Ordering::SeqCst);
        (
            String::from_utf8_lossy(&answer[..read]).into_owned(),
            sent.load(Ordering::SeqCst),
        )
    };
    let ((text, sent_when_answered), ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(read, trickle)
    })
    .await
    .expect("answered");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("errors.requestTimeout"), "{text}");
    assert!(
        sent_when_answered < body.len(),
        "cut off before the body was complete ({sent_when_answered} of {} bytes)",
        body.len()
    );
    assert_eq!(app.listing_values(6).await, before, "nothing was written");
}

/// Sessions of the database waiting on a lock, polled (5 s at most) until there are `expected`.
async fn sessions_waiting_on_a_lock(pool: &sqlx::PgPool, expected: i64) -> i64 {
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND datname = current_database()";
    let mut blocked = 0;
    for _ in 0..200 {
        blocked = sqlx::query_scalar::<_, i64>(waiting)
            .fetch_one(pool)
            .await
            .expect("activity");
        if blocked == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    blocked
}

/// One token sending write bodies slowly holds at most its own bound of a worker's slots: its
/// next write is refused at once (429, `Retry-After`), another client's write and every read
/// are served, and once its slow writes are cut off (408) it writes again.
#[actix_web::test]
async fn a_client_trickling_bodies_holds_only_its_own_slots() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SLOW: &str = "slow-writer-token";
    const OTHER: &str = "other-writer-token";
    let db = TestDb::fresh(Backend::Sqlite).await;
    let tokens = format!("{SLOW},{OTHER}");
    let mut settings = settings_for(&db, &[("WRITER_API_TOKEN", tokens.as_str())]);
    settings.server.workers = Some(1);
    settings.server.max_writes_in_flight_per_client = 2;
    settings.server.request_body_timeout_ms = 2_000;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let path = "/api/v2/marketplace/listings/6/attributes";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
            .await
            .expect("connect");
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {SLOW}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = app
        .json("PATCH", path, r#"{"year": 2019}"#, Some(SLOW))
        .await;
    refused.assert_error(429, "errors.tooManyRequests");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    let other = app
        .json("PATCH", path, r#"{"year": 2018}"#, Some(OTHER))
        .await;
    assert_eq!(other.status, 200, "another client writes: {}", other.body);
    assert_eq!(app.get(path).await.status, 200, "reads are served");
    for mut stream in held {
        let mut answer = vec![0_u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        let text = String::from_utf8_lossy(&answer[..read]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let again = app
        .json("PATCH", path, r#"{"year": 2017}"#, Some(SLOW))
        .await;
    assert_eq!(
        again.status, 200,
        "its slots are free again: {}",
        again.body
    );
}

/// PostgreSQL stopped (`pg_ctl stop -m fast`, as a restart does) under a stream of reads: the
/// answers the service had cached keep answering 200 through the outage — a value written just
/// before it included — counted as stale; an uncached read answers 503 with `Retry-After`,
/// never 500; once the database and the listener are back, the cache answers as before.
#[actix_web::test]
async fn with_postgres_stopped_cached_answers_stand_in_and_no_read_is_a_500() {
    let server = OwnServer::start();
    let db = TestDb::at(server.url("postgres"));
    let app = TestApp {
        address: start(&settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)])).await,
        db,
        client: awc::Client::default(),
    };
    let category = "/api/v2/marketplace/categories/1311/attributes";
    let listing = "/api/v2/marketplace/listings/6/attributes";
    let written = app
        .json("PATCH", listing, r#"{"year": 2003}"#, Some(WRITER_TOKEN))
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    let schema = app.get(category).await;
    assert_eq!(schema.status, 200);
    let values = app.get(listing).await;
    assert!(values.body.to_string().contains("2003"), "{}", values.body);

    // Reads in a loop while the database stops, stays down and starts again.
    let reading = Arc::new(AtomicBool::new(true));
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let (app, reading, statuses) = (
            TestApp {
                address: app.address.clone(),
                db: app.db.share(),
                client: awc::Client::default(),
            },
            reading.clone(),
            statuses.clone(),
        );
        actix_web::rt::spawn(async move {
            let mut uncached = 10;
            while reading.load(Ordering::SeqCst) {
                let uncached_path = format!("/api/v2/marketplace/listings/{uncached}/attributes");
                uncached = if uncached == 60 { 10 } else { uncached + 1 };
                for path in [category, listing, uncached_path.as_str()] {
                    let reply = app.get(path).await;
                    statuses
                        .lock()
                        .expect("statuses")
                        .push((path.to_owned(), reply));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("stopped");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // Down: the cached answers stand in, the others are refused as the database's fault.
    let cached_during = app.get(listing).await;
    assert_eq!(cached_during.status, 200, "{}", cached_during.body);
    assert_eq!(
        cached_during.body, values.body,
        "the answer from before the outage"
    );
    app.get("/api/v2/marketplace/listings/59/attributes")
        .await
        .assert_error(503, "errors.storageUnavailable");
    assert_eq!(
        app.metric("unified_attributes_cache_unconfirmed").await,
        1.0
    );
    assert!(app.metric("unified_attributes_stale_answers_total").await > 0.0);

    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .expect("started");
    let mut resumed = false;
    for _ in 0..100 {
        if app.metric("unified_attributes_cache_unconfirmed").await == 0.0 {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(resumed, "the listener is back within 10 s of the database");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    reading.store(false, Ordering::SeqCst);
    reader.await.expect("the reader ends");
    drop(server);

    let statuses = std::mem::take(&mut *statuses.lock().expect("statuses"));
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(path, reply)| {
            reply.status >= 500
                && !(reply.status == 503 && path.as_str() != category && path.as_str() != listing)
        })
        .map(|(path, reply)| format!("{path}: {} {}", reply.status, reply.body))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed that must not: {failed:?}",
        failed.len(),
        statuses.len()
    );
    let refused = statuses.iter().filter(|(_, r)| r.status == 503).count();
    assert!(refused > 0, "some uncached reads met the database down");
    for (_, reply) in statuses.iter().filter(|(_, r)| r.status == 503) {
        reply.assert_error(503, "errors.storageUnavailable");
        assert_eq!(reply.header("Retry-After"), Some("1"), "{}", reply.body);
    }
    assert!(app.get(listing).await.body.to_string().contains("2003"));
}

/// Fair share for clients without credentials too: one address (as the proxy in front saw it,
/// the last `X-Forwarded-For` entry; an earlier one is the client's word) has at most its bound
/// of requests in flight, the next is 429 at once; another address is served meanwhile.
#[actix_web::test]
async fn one_anonymous_address_holds_at_most_its_share_of_a_workers_requests() {
    use sqlx::Connection;
    use std::time::Duration;

    let db = TestDb::fresh(Backend::Postgres).await;
    let mut settings = settings_for(&db, &[]);
    settings.server.workers = Some(1);
    settings.server.max_in_flight_per_client = 2;
    settings.server.trust_forwarded_for = true;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let read_from = |address: &'static str, listing: i64| {
        let (client, url) = (
            awc::Client::default(),
            format!(
                "{}/api/v2/marketplace/listings/{listing}/attributes",
                app.address
            ),
        );
        async move {
            client
                .get(url)
                .insert_header(("X-Forwarded-For", address))
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16()
        }
    };
    // Uncached reads wait behind a lock held here: each holds its slot meanwhile.
    let mut locker = sqlx::PgConnection::connect(&app.db.sql_url())
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE listing_attribute_values IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let held = [
        actix_web::rt::spawn(read_from("10.0.0.1", 11)),
        actix_web::rt::spawn(read_from("10.0.0.1", 12)),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_from("10.0.0.1", 13).await, 429, "its third at once");
    assert_eq!(
        read_from("10.0.0.2, 10.0.0.1", 14).await,
        429,
        "an entry the client wrote itself changes nothing"
    );
    let other = actix_web::rt::spawn(read_from("10.0.0.2", 15));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT")
        .execute(&mut locker)
        .await
        .expect("commit");
    for read in held {
        assert_eq!(read.await.expect("joined"), 200);
    }
    assert_eq!(
        other.await.expect("joined"),
        200,
        "another address is served"
    );
    assert_eq!(
        read_from("10.0.0.1", 13).await,
        200,
        "its slots are free again"
    );
}

/// Open connections are capped below the file limit, and idle ones make room: with the cap at
/// 20, thirty clients that each sent a request and kept their connection open leave the
/// service holding at most 20, the longest idle closed first, and a new client is served.
#[actix_web::test]
async fn idle_connections_make_room_for_new_clients_under_the_connection_cap() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let db = TestDb::fresh(Backend::Sqlite).await;
    let mut settings = settings_for(&db, &[]);
    settings.server.workers = Some(1);
    settings.server.max_connections = 20;
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let address = app.address.trim_start_matches("http://").to_owned();
    // A keep-alive request on a new connection, answered; the connection stays open.
    let idle_client = || async {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("request");
        let mut answer = vec![0_u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer[..read])
        );
        stream
    };
    let mut oldest = Vec::new();
    for _ in 0..15 {
        oldest.push(idle_client().await);
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut newer = Vec::new();
    for _ in 0..15 {
        newer.push(idle_client().await);
    }
    let open = app.metric("unified_attributes_open_connections").await;
    assert!(open <= 20.0, "{open} connections open under a cap of 20");
    let closed = app
        .metric("unified_attributes_idle_connections_closed_total")
        .await;
    assert!(closed >= 10.0, "{closed} idle connections closed");
    // The ones closed were the oldest: their reads end.
    let mut ended = 0;
    for mut stream in oldest {
        let mut byte = [0_u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await
        {
            ended += 1;
        }
    }
    assert!(ended >= 10, "{ended} of the oldest connections were closed");
    assert_eq!(
        app.get("/health/live").await.status,
        200,
        "a new client is served"
    );
    drop(newer);
}
