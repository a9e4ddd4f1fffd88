//! The marketplace's users write with the RS256 tokens its auth service signs: keys generated
//! here (openssl), tokens signed here. A user writes what they own — a listing, the products and
//! variants of their storefront — and nothing else; a bad token is 401 before the body is read;
//! the `admin` role opens the admin routes. Service tokens keep working.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as Json, json};

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, Reply, TestApp, WRITER_TOKEN, spawn_app_with};

on_both_backends!(
    a_user_writes_what_they_own_and_nothing_else,
    a_missing_expired_foreign_or_forged_token_is_401_before_the_body_is_read,
    the_admin_role_opens_the_admin_routes,
    a_write_to_what_is_not_the_users_is_refused_before_its_body_arrives,
);

const ISSUER: &str = "https://auth.marketplace.test";
const AUDIENCE: &str = "marketplace-api";
/// A car listing of the demo (category 1311); its owner is user 1 + 6 % 50.
const CAR_LISTING: i64 = 6;
const CAR_OWNER: i64 = 7;
/// The demo's first product, of storefront 1 + 61 % 5 = 2, which user 102 owns, and its variant.
const PRODUCT: i64 = 61;
const VARIANT: i64 = 62;
const SHOP_OWNER: i64 = 102;

/// An RSA key pair in PEM (private PKCS#8, public SPKI), made by openssl.
fn key_pair(dir: &std::path::Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is required (Debian package openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    let (private_path, public_path) = (
        private.to_str().expect("utf-8"),
        public.to_str().expect("utf-8"),
    );
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_path,
    ]);
    run(&["pkey", "-in", private_path, "-pubout", "-out", public_path]);
    (std::fs::read(&private).expect("private key"), public)
}

struct Issuer {
    key: EncodingKey,
}

impl Issuer {
    fn token(&self, user: i64, roles: &[&str], claims: Json) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut body = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": user.to_string(), "user_id": user,
            "email": format!("user{user}@example.test"), "roles": roles,
            "iat": now, "exp": now + 600,
        });
        if let (Json::Object(body), Json::Object(overrides)) = (&mut body, claims) {
            body.extend(overrides);
        }
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &body, &self.key).expect("signed")
    }
}

/// A service that trusts `trusted`'s public key; returns it with that issuer and a forger (a
/// key the service does not trust).
async fn spawn(backend: Backend) -> (TestApp, Issuer, Issuer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (trusted, public) = key_pair(dir.path(), "auth");
    let (forger, _) = key_pair(dir.path(), "forger");
    let public = public.to_str().expect("utf-8").to_owned();
    let app = spawn_app_with(
        backend,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
            ("JWT_PUBLIC_KEY_FILE", &public),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let issuer = |pem: &[u8]| Issuer {
        key: EncodingKey::from_rsa_pem(pem).expect("an RSA private key"),
    };
    (app, issuer(&trusted), issuer(&forger), dir)
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .insert_header(("Content-Type", "application/json"));
    for header in headers {
        request = request.insert_header(*header);
    }
    app.send(request, Some(body.to_owned())).await
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

fn year(reply: &Reply) -> Json {
    reply.body["data"]["values"]
        .as_array()
        .and_then(|values| values.iter().find(|v| v["code"] == "year"))
        .map(|v| v["value"].clone())
        .unwrap_or(Json::Null)
}

async fn a_user_writes_what_they_own_and_nothing_else(backend: Backend) {
    let (app, issuer, _, _keys) = spawn(backend).await;
    let listing = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let owner = issuer.token(CAR_OWNER, &["user"], json!({}));
    let (name, value) = bearer(&owner);
    let written = send(
        &app,
        "PATCH",
        &listing,
        r#"{"year": 2019}"#,
        &[(name, &value)],
    )
    .await;
    assert_eq!(written.status, 200, "{}", written.body);
    // A browser: the token in the `access_token` cookie; the legacy frontend's POST.
    let cookie = format!("access_token={owner}");
    let full = app.get(&listing).await.body["data"]["values"].clone();
    let mut replacement = serde_json::Map::new();
    for value in full.as_array().expect("values") {
        replacement.insert(
            value["code"].as_str().expect("code").to_owned(),
            value["value"].clone(),
        );
    }
    replacement.insert("year".into(), json!(2020));
    let posted = send(
        &app,
        "POST",
        &listing,
        &Json::Object(replacement).to_string(),
        &[("Cookie", &cookie)],
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(year(&app.get(&listing).await), json!(2020));

    // Someone else's listing: 403, nothing written.
    let stranger = issuer.token(CAR_OWNER + 1, &["user"], json!({}));
    let (name, value) = bearer(&stranger);
    let refused = send(
        &app,
        "PATCH",
        &listing,
        r#"{"year": 2001}"#,
        &[(name, &value)],
    )
    .await;
    refused.assert_error(403, "errors.forbidden");
    assert_eq!(
        year(&app.get(&listing).await),
        json!(2020),
        "nothing written"
    );

    // The storefront's owner writes its product and the product's variants; others do not.
    let shop = issuer.token(SHOP_OWNER, &["user"], json!({}));
    let (name, shop_value) = bearer(&shop);
    for (path, body) in [
        (
            format!("/api/v2/marketplace/products/{PRODUCT}/attributes"),
            r#"{"condition": "used"}"#,
        ),
        (
            format!("/api/v2/marketplace/variants/{VARIANT}/attributes"),
            r#"{"color": ["white"]}"#,
        ),
    ] {
        let written = send(&app, "PATCH", &path, body, &[(name, &shop_value)]).await;
        assert_eq!(written.status, 200, "{path}: {}", written.body);
        let (name, value) = bearer(&owner);
        send(&app, "PATCH", &path, body, &[(name, &value)])
            .await
            .assert_error(403, "errors.forbidden");
    }
    // Service tokens still write anything.
    let service = app
        .json("PATCH", &listing, r#"{"year": 2021}"#, Some(WRITER_TOKEN))
        .await;
    assert_eq!(service.status, 200, "{}", service.body);
}

/// Tokens the auth service did not issue now for us: expired, not yet valid (`nbf`), issued in
/// the future (`iat`), for another issuer or audience, forged, or not tokens at all.
async fn a_missing_expired_foreign_or_forged_token_is_401_before_the_body_is_read(
    backend: Backend,
) {
    let (app, issuer, forger, _keys) = spawn(backend).await;
    let listing = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let before = year(&app.get(&listing).await);
    let expired = issuer.token(CAR_OWNER, &["user"], json!({"exp": 1_000_000_000}));
    let foreign_issuer = issuer.token(CAR_OWNER, &["user"], json!({"iss": "https://evil.test"}));
    let foreign_audience = issuer.token(CAR_OWNER, &["user"], json!({"aud": "another-api"}));
    let forged = forger.token(CAR_OWNER, &["user", "admin"], json!({}));
    let in_a_day = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 86_400;
    let not_yet_valid = issuer.token(CAR_OWNER, &["user"], json!({"nbf": in_a_day}));
    let issued_tomorrow = issuer.token(CAR_OWNER, &["user"], json!({"iat": in_a_day}));
    for (what, token) in [
        ("expired", expired),
        ("valid only from tomorrow (nbf)", not_yet_valid),
        ("issued tomorrow (iat)", issued_tomorrow),
        ("another issuer", foreign_issuer),
        ("another audience", foreign_audience),
        ("a key the service does not trust", forged),
        ("not a token", "not.a.token".to_owned()),
    ] {
        let (name, value) = bearer(&token);
        let reply = send(
            &app,
            "PATCH",
            &listing,
            r#"{"year": 2002}"#,
            &[(name, &value)],
        )
        .await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        let cookie = format!("access_token={token}");
        let reply = send(
            &app,
            "PATCH",
            &listing,
            r#"{"year": 2002}"#,
            &[("Cookie", &cookie)],
        )
        .await;
        assert_eq!(reply.status, 401, "{what} (cookie): {}", reply.body);
    }
    // No credentials: 401 whatever the body would have earned.
    let oversized = format!(r#"{{"title": "{}"}}"#, "x".repeat(200_000));
    for (body, content_type) in [
        ("{not json", "application/json"),
        ("year=2003", "application/x-www-form-urlencoded"),
        (oversized.as_str(), "application/json"),
    ] {
        let reply = send(
            &app,
            "PUT",
            &listing,
            body,
            &[("Content-Type", content_type)],
        )
        .await;
        reply.assert_error(401, "errors.unauthorized");
    }
    assert_eq!(year(&app.get(&listing).await), before, "nothing written");
}

async fn the_admin_role_opens_the_admin_routes(backend: Backend) {
    let (app, issuer, _, _keys) = spawn(backend).await;
    let status = "/api/v2/admin/attributes/feature-status";
    let user = issuer.token(CAR_OWNER, &["user"], json!({}));
    let (name, value) = bearer(&user);
    app.get_as(status, (name, &value))
        .await
        .assert_error(403, "errors.forbidden");
    let admin = issuer.token(1, &["admin", "user"], json!({}));
    let (name, admin_value) = bearer(&admin);
    let reply = app.get_as(status, (name, &admin_value)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // An admin writes any listing, and audited changes name the admin user.
    let listing = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let written = send(
        &app,
        "PATCH",
        &listing,
        r#"{"year": 2011}"#,
        &[(name, &admin_value)],
    )
    .await;
    assert_eq!(written.status, 200, "{}", written.body);
    let changed = send(
        &app,
        "PUT",
        status,
        r#"{"dual_write": true}"#,
        &[(name, &admin_value)],
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let audit = app.get_as(status, (name, &admin_value)).await;
    assert_eq!(
        audit.body["data"]["audit"][0]["changed_by"], "user:1",
        "{}",
        audit.body
    );
}

/// A key without the issuer and audience to check would accept tokens minted for any service
/// that shares the auth service's key: the service refuses to start, naming what is missing.
#[actix_web::test]
async fn a_public_key_without_issuer_and_audience_stops_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, public) = key_pair(dir.path(), "auth");
    let db = crate::common::TestDb::fresh(Backend::Sqlite).await;
    let public = public.to_str().expect("utf-8");
    let settings = crate::helpers::settings_for(&db, &[("JWT_PUBLIC_KEY_FILE", public)]);
    let err = api::Application::build(&settings)
        .await
        .expect_err("no issuer, no audience");
    assert!(
        err.to_string().contains("JWT_ISSUER and JWT_AUDIENCE"),
        "{err}"
    );
    let garbage = crate::helpers::settings_for(
        &db,
        &[
            ("JWT_PUBLIC_KEY", "not a key"),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    let err = api::Application::build(&garbage)
        .await
        .expect_err("not a key");
    assert!(err.to_string().contains("not an RSA public key"), "{err}");
}

/// Sends a write's head and the first byte of a body that never comes; returns the answer's
/// status line, or `None` when none came within `wait`.
async fn answer_to_a_trickled_write(
    app: &TestApp,
    path: &str,
    token: &str,
    wait: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut answer = vec![0_u8; 256];
    let read = tokio::time::timeout(wait, stream.read(&mut answer))
        .await
        .ok()?
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().map(str::to_owned)
}

/// Ownership comes from the path and is decided before the body is read: a user trickling a
/// body to another user's listing (or to one that does not exist) is answered at once, and
/// holds no slot for the body deadline. The owner's trickled write waits for its body.
async fn a_write_to_what_is_not_the_users_is_refused_before_its_body_arrives(backend: Backend) {
    use std::time::Duration;
    let (app, issuer, _, _dir) = spawn(backend).await;
    let stranger = issuer.token(CAR_OWNER + 1, &[], json!({}));
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    assert_eq!(
        answer_to_a_trickled_write(&app, &path, &stranger, Duration::from_secs(3))
            .await
            .as_deref(),
        Some("HTTP/1.1 403 Forbidden")
    );
    assert_eq!(
        answer_to_a_trickled_write(
            &app,
            "/api/v2/marketplace/listings/999999/attributes",
            &stranger,
            Duration::from_secs(3)
        )
        .await
        .as_deref(),
        Some("HTTP/1.1 404 Not Found")
    );
    let owner = issuer.token(CAR_OWNER, &[], json!({}));
    assert_eq!(
        answer_to_a_trickled_write(&app, &path, &owner, Duration::from_millis(500)).await,
        None,
        "the owner's write waits for its body"
    );
}
