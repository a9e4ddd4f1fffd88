//! Every documented route walked with hostile values — NUL, 60 KB, invalid UTF-8 escapes,
//! negative and huge ids, look-alike spellings — in its path parameters, its query parameters
//! and its JSON body, anonymously and with each token: no answer is a 5xx. A client's mistake
//! never feeds the error-rate alert, the canary analysis or the deploy gate.

use serde_json::json;

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, TestApp, WRITER_TOKEN, spawn_app};

/// Values for a path or query parameter, percent-encoded as they travel.
fn hostile_parameters() -> Vec<String> {
    vec![
        "%00".into(),
        "a%00b".into(),
        "%FF%FE".into(),
        "%C0%AF".into(),
        "-1".into(),
        "0".into(),
        "99999999999999999999999".into(),
        "9223372036854775807".into(),
        "1e308".into(),
        "%EF%BC%A2%EF%BC%AD%EF%BC%B7".into(),
        "yug%D0%BE".into(),
        "..%2F..%2Fetc%2Fpasswd".into(),
        "x".repeat(60_000),
    ]
}

/// JSON bodies for the routes that take one.
fn hostile_bodies() -> Vec<String> {
    let long = "x".repeat(64 * 1024);
    vec![
        json!({"year": "\u{0}"}).to_string(),
        json!({"attribute": "\u{0}", "alias": "\u{0}", "option": "\u{0}"}).to_string(),
        json!({"attribute": long, "value": long, "from": long, "to": long}).to_string(),
        json!({"code": long, "type": "select", "display_name": {"sr": long}}).to_string(),
        json!({"from": "brand", "to": "car_make", "raw_value": "\u{0}", "force": true}).to_string(),
        json!({"reason": "\u{0}", "attribute": "x"}).to_string(),
        json!({"use_unified": true, "unified_percent": 255}).to_string(),
        json!({"year": 1e308, "mileage": -1e308, "color": ["\u{202e}", "\u{202e}"]}).to_string(),
        json!([1, 2, 3]).to_string(),
        "[".repeat(10_000),
        "{\"a\": \"\\ud800\"}".to_owned(),
        json!({"ＢＭＷ": "yugо", "car_make": "ＢＭＷ\u{200b}"}).to_string(),
    ]
}

/// The documented operations: (method, path template, query parameter names).
async fn operations(app: &TestApp) -> Vec<(String, String, Vec<String>)> {
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    let mut found = Vec::new();
    for (path, item) in spec.body["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let query = operation["parameters"]
                .as_array()
                .map(|params| {
                    params
                        .iter()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            found.push((method.to_uppercase(), path.clone(), query));
        }
    }
    assert!(
        found.len() > 30,
        "the whole API is documented: {}",
        found.len()
    );
    found
}

/// `template` with every `{parameter}` replaced by `value`.
fn filled(template: &str, value: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        path.push_str(value);
        rest = &rest[close..];
    }
    path.push_str(rest);
    path
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> u16 {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .insert_header(("Content-Type", "application/json"));
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let sent = match body {
        Some(body) => request.send_body(body.to_owned()).await,
        None => request.send().await,
    };
    match sent {
        Ok(response) => response.status().as_u16(),
        // The service closed the connection on a request it would not read: not a 5xx.
        Err(err) => {
            eprintln!(
                "{method_path}: {err}",
                method_path = path.chars().take(80).collect::<String>()
            );
            499
        }
    }
}

#[actix_web::test]
async fn no_hostile_request_is_answered_with_a_5xx_on_postgres() {
    walk(Backend::Postgres).await;
}

#[actix_web::test]
async fn no_hostile_request_is_answered_with_a_5xx_on_sqlite() {
    walk(Backend::Sqlite).await;
}

async fn walk(backend: Backend) {
    let app = spawn_app(backend).await;
    let operations = operations(&app).await;
    let mut failures = Vec::new();
    let mut sent = 0;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (method, template, query) in &operations {
        let takes_body = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
        for token in [None, Some(WRITER_TOKEN), Some(ADMIN_TOKEN)] {
            for value in hostile_parameters() {
                let path = filled(template, &value);
                let bodies = if takes_body {
                    vec!["{}".to_owned()]
                } else {
                    vec![]
                };
                let mut requests: Vec<(String, Option<String>)> =
                    vec![(path.clone(), bodies.first().cloned())];
                for name in query {
                    let sample = filled(template, "1");
                    requests.push((format!("{sample}?{name}={value}"), bodies.first().cloned()));
                }
                for (path, body) in requests {
                    let status = send(&app, method, &path, body.as_deref(), token).await;
                    sent += 1;
                    *by_status.entry(status).or_default() += 1;
                    if status >= 500 {
                        failures.push(format!(
                            "{status} {method} {}",
                            path.chars().take(120).collect::<String>()
                        ));
                    }
                }
            }
            if takes_body {
                let path = filled(template, "1");
                for body in hostile_bodies() {
                    let status = send(&app, method, &path, Some(&body), token).await;
                    sent += 1;
                    *by_status.entry(status).or_default() += 1;
                    if status >= 500 {
                        failures.push(format!(
                            "{status} {method} {path} {}",
                            body.chars().take(80).collect::<String>()
                        ));
                    }
                }
            }
        }
    }
    assert!(sent > 1_000, "{sent} requests");
    // Most requests reach the service's own answers, not the client's or the server's limits.
    let answered: usize = by_status
        .iter()
        .filter(|(s, _)| **s != 499)
        .map(|(_, n)| n)
        .sum();
    assert!(answered * 10 > sent * 9, "{by_status:?}");
    eprintln!("{backend:?}: {sent} hostile requests, by status {by_status:?}");
    assert!(
        failures.is_empty(),
        "{} of {sent} answered 5xx:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // And the service still answers.
    let live = app.get("/health/ready").await;
    assert_eq!(live.status, 200, "{}", live.body);
}
