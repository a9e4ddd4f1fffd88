//! The load benchmark's floors: not a criterion benchmark; `benches/load/run.sh` starts it and
//! drives it with wrk. As many workers as the service (`BASELINE_WORKERS`), every answer the
//! bytes of `BASELINE_BODY`.
//!
//! - Alone: actix-web answering at once — the ceiling of the cached read.
//! - With `BASELINE_DATABASE_URL`: first the statement of `BASELINE_STATEMENT` (a pgbench
//!   script; its `:id` is the listing id in the request's path) through sqlx, on connections
//!   held per worker in a deadpool pool as the service holds its read connections, the rows
//!   fetched and left undecoded — HTTP in, one query, HTTP out: what the stack the service is
//!   built on costs an uncached read before any code of ours runs.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use deadpool::managed::{self, Metrics, RecycleResult};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

fn main() -> std::io::Result<()> {
    let port: u16 = env_or("BASELINE_PORT", 18182);
    let Ok(path) = std::env::var("BASELINE_BODY") else {
        // `cargo bench` without the load script: nothing to serve.
        return Ok(());
    };
    let body = web::Bytes::from(std::fs::read(path)?);
    let workers: usize = env_or("BASELINE_WORKERS", 2);
    let database = match std::env::var("BASELINE_DATABASE_URL") {
        Ok(url) => Some(Database {
            url,
            statement: statement(&std::env::var("BASELINE_STATEMENT").map_err(|_| {
                std::io::Error::other("BASELINE_DATABASE_URL needs BASELINE_STATEMENT")
            })?)?,
            connections: env_or("BASELINE_CONNECTIONS", 4),
        }),
        Err(_) => None,
    };
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            // One pool per worker, as the service's read pools are.
            let reads = database.clone().map(|database| {
                let pool = managed::Pool::builder(Connector(database.url))
                    .max_size(database.connections)
                    .build()
                    .expect("a pool without a runtime-bound timeout builds");
                (pool, database.statement)
            });
            App::new().default_service(web::to(move |request: HttpRequest| {
                let (body, reads) = (body.clone(), reads.clone());
                async move {
                    if let Some((pool, statement)) = reads {
                        let id = listing_id(request.path()).ok_or_else(|| {
                            actix_web::error::ErrorBadRequest("no listing id in the path")
                        })?;
                        let mut connection: managed::Object<Connector> = pool
                            .get()
                            .await
                            .map_err(actix_web::error::ErrorServiceUnavailable)?;
                        sqlx::query(&statement)
                            .bind(id)
                            .fetch_all(&mut *connection)
                            .await
                            .map_err(actix_web::error::ErrorInternalServerError)?;
                    }
                    Ok::<_, actix_web::Error>(
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body),
                    )
                }
            }))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}

#[derive(Clone)]
struct Database {
    url: String,
    statement: String,
    connections: usize,
}

struct Connector(String);

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect(&self.0).await
    }

    async fn recycle(&self, _: &mut PgConnection, _: &Metrics) -> RecycleResult<sqlx::Error> {
        Ok(())
    }
}

/// The SQL of a pgbench script: its comments and meta-commands dropped, `:id` as `$1`.
fn statement(path: &str) -> std::io::Result<String> {
    let script = std::fs::read_to_string(path)?;
    let sql: Vec<&str> = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--") && !line.starts_with('\\'))
        .collect();
    Ok(sql
        .join("\n")
        .replace(":id", "$1")
        .trim_end_matches(';')
        .to_owned())
}

/// `/api/v2/marketplace/listings/{id}/attributes` → `id`.
fn listing_id(path: &str) -> Option<i64> {
    let mut segments = path.split('/');
    segments.find(|s| *s == "listings")?;
    segments.next()?.parse().ok()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
