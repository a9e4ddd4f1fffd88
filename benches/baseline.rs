//! The load benchmark's ceiling: actix-web answering every request with the same bytes
//! (read once from `BASELINE_BODY`), with as many workers as the service. Not a criterion
//! benchmark: `benches/load/run.sh` starts it and drives it with wrk.

use actix_web::{App, HttpResponse, HttpServer, web};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("BASELINE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(18182);
    let Ok(path) = std::env::var("BASELINE_BODY") else {
        // `cargo bench` without the load script: nothing to serve.
        return Ok(());
    };
    let body = web::Bytes::from(std::fs::read(path)?);
    let workers: usize = std::env::var("BASELINE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            App::new().default_service(web::to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}
