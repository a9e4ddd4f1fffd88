//! `spawn_app`: the real service on port 0 over a fresh database, and typed request helpers.

use std::collections::HashMap;

use api::{Application, Settings};
use serde_json::Value as Json;

use crate::common::{Backend, TestDb};

pub const WRITER_TOKEN: &str = "writer-token-for-tests";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub client: awc::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Json,
}

/// Starts the service over a fresh database holding the demo marketplace (legacy form).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await
}

/// Starts the service with these plain variables set (flags, tokens, …).
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let db = TestDb::fresh(backend).await;
    let address = start(&settings_for(&db, vars)).await;
    TestApp {
        address,
        db,
        client: awc::Client::default(),
    }
}

/// Starts the service on `db` as it is (no demo data), with these plain variables set.
pub async fn serve_as_is(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
    let mut settings = settings_for(&db, vars);
    settings.demo.seed_on_first_start = Some(false);
    TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    }
}

/// A second replica of `app`: another service process on the same database.
pub async fn spawn_replica(app: &TestApp, vars: &[(&str, &str)]) -> TestApp {
    let db = app.db.share();
    let address = start(&settings_for(&db, vars)).await;
    TestApp {
        address,
        db,
        client: awc::Client::default(),
    }
}

/// Starts the service with these settings; returns its address.
pub async fn start(settings: &Settings) -> String {
    let application = Application::build(settings)
        .await
        .expect("the service starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    actix_web::rt::spawn(application.run_until_stopped());
    address
}

pub fn settings_for(db: &TestDb, vars: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.insert("DATABASE_URL".into(), db.url.clone());
    let mut settings = Settings::load_from(None, |name| env.get(name).cloned()).expect("settings");
    settings.server.bind = "127.0.0.1:0".into();
    settings.server.workers = Some(1);
    settings.database.max_connections = 4;
    settings.demo.seed_on_first_start = Some(true);
    settings.demo.listings = Some(60);
    settings
}

impl TestApp {
    /// Sends a request and reads the whole reply; the body is JSON where it parses.
    pub async fn send(&self, request: awc::ClientRequest, body: Option<String>) -> Reply {
        let sent = match body {
            Some(body) => request.send_body(body),
            None => request.send(),
        };
        let mut response = sent.await.expect("the request reaches the service");
        let bytes = response
            .body()
            .limit(16 << 20)
            .await
            .expect("a readable body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.address)), None)
            .await
    }

    pub async fn get_as(&self, path: &str, header: (&str, &str)) -> Reply {
        self.send(
            self.client
                .get(format!("{}{path}", self.address))
                .insert_header(header),
            None,
        )
        .await
    }

    /// `PUT` with a JSON body and, when given, a bearer token.
    pub async fn put_json(&self, path: &str, body: &str, token: Option<&str>) -> Reply {
        let mut request = self
            .client
            .put(format!("{}{path}", self.address))
            .insert_header(("Content-Type", "application/json"));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        self.send(request, Some(body.to_owned())).await
    }

    /// A request with a JSON body and, when given, a bearer token.
    pub async fn json(&self, method: &str, path: &str, body: &str, token: Option<&str>) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .insert_header(("Content-Type", "application/json"));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        self.send(request, Some(body.to_owned())).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.delete(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        self.send(request, None).await
    }

    /// The Prometheus exposition text.
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200);
        reply.body.as_str().expect("text").to_owned()
    }

    /// The value of one sample line of `/metrics` (`name{labels}` as written), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    pub async fn listing_values(&self, listing: i64) -> Json {
        let reply = self
            .get(&format!(
                "/api/v2/marketplace/listings/{listing}/attributes"
            ))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["data"]["values"].clone()
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error reply in the contract: status, i18n key, a human detail.
    pub fn assert_error(&self, status: u16, key: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["success"], false, "{}", self.body);
        assert_eq!(self.body["error"], key, "{}", self.body);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
    }
}
