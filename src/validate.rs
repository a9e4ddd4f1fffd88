//! `validate`: the post-deployment suite against a running service, in the seed's six
//! categories — API (4), database (3), performance (2), feature (2), integration (2),
//! monitoring (2) — pass or fail per check, a JSON report, exit 1 on any failure.
//!
//! Every request goes to the URLs given; the database checks need `--database-url` and are
//! reported as skipped without it (a skip is not a pass, and is listed as such).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::Value as Json;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The public listener, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    base_url: String,
    /// The listener of `/metrics` and the admin API (default: the base URL).
    #[arg(long)]
    internal_url: Option<String>,
    /// The phase the flags must mean (legacy, dual_write, canary, unified, archived).
    #[arg(long)]
    expect_phase: Option<String>,
    /// A category whose schema is read; by default one with attributes, found in the database
    /// (`--database-url`). Unknown: the checks that need one are skipped.
    #[arg(long)]
    category: Option<i64>,
    /// A listing whose values are read; by default one with values, found in the database.
    #[arg(long)]
    listing: Option<i64>,
    /// The write check is off unless this names a listing kept for it (never a user's): its
    /// values are written back unchanged and read. Without it, validate writes nothing.
    #[arg(long)]
    write_listing: Option<i64>,
    /// Requests of the performance probe (bounded; sent four at a time).
    #[arg(long, default_value_t = 200)]
    probe_requests: usize,
    /// The p95 latency the probe must stay under, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    max_p95_ms: f64,
    /// Admin token for the flags check (default: the first of ADMIN_API_TOKEN).
    #[arg(long, env = "ADMIN_API_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Writer token for the write-then-read check (default: the first of WRITER_API_TOKEN).
    #[arg(long, env = "WRITER_API_TOKEN", hide_env_values = true)]
    writer_token: Option<String>,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skipped,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub category: &'static str,
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    pub millis: u128,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub base_url: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub checks: Vec<Check>,
}

type CheckResult = Result<String, String>;

/// One check, run (and timed) when awaited.
type CheckFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = CheckResult> + 'a>>;

/// A check to run, or the reason it is skipped.
type Runnable<'a> = Result<CheckFuture<'a>, String>;

struct Probe {
    client: awc::Client,
    base: String,
    internal: String,
    args: ValidateArgs,
    /// The category and listing the checks read, given or found.
    category: Option<i64>,
    listing: Option<i64>,
}

/// Why a check did not run: a skip is reported as such, never as a pass.
const NO_CATEGORY: &str = "no category known: pass --category, or --database-url to find one";

struct Answer {
    status: u16,
    body: Json,
    headers: awc::http::header::HeaderMap,
}

impl Probe {
    fn first(token: &Option<String>) -> Option<String> {
        token
            .as_deref()
            .and_then(|tokens| tokens.split(',').map(str::trim).find(|t| !t.is_empty()))
            .map(str::to_owned)
    }

    async fn send(
        &self,
        method: &str,
        url: String,
        token: Option<String>,
        body: Option<String>,
    ) -> Result<Answer, String> {
        let method = awc::http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.client.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let sent = match body {
            Some(body) => {
                request
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(body)
                    .await
            }
            None => request.send().await,
        };
        let mut response = sent.map_err(|err| format!("{url}: {err}"))?;
        let bytes = response
            .body()
            .limit(8 << 20)
            .await
            .map_err(|err| format!("{url}: {err}"))?;
        Ok(Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into())),
        })
    }

    async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send("GET", format!("{}{path}", self.base), None, None)
            .await
    }

    async fn internal(&self, path: &str, token: Option<String>) -> Result<Answer, String> {
        self.send("GET", format!("{}{path}", self.internal), token, None)
            .await
    }

    fn expect(answer: &Answer, status: u16, what: &str) -> Result<(), String> {
        if answer.status == status {
            Ok(())
        } else {
            Err(format!(
                "{what}: HTTP {} (expected {status})",
                answer.status
            ))
        }
    }

    fn codes(data: &Json) -> BTreeSet<String> {
        let items = data.get("data").unwrap_or(data);
        items
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("code").or_else(|| a.get("name")))
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    }

    // --- API ---

    async fn category_attributes(&self) -> CheckResult {
        let path = format!(
            "/api/v2/marketplace/categories/{}/attributes",
            self.category.ok_or(NO_CATEGORY)?
        );
        let answer = self.get(&path).await?;
        Self::expect(&answer, 200, &path)?;
        let codes = Self::codes(&answer.body);
        if answer.body["success"] != true || codes.is_empty() {
            return Err(format!("{path}: no attributes in the envelope"));
        }
        Ok(format!(
            "{} attributes for category {}",
            codes.len(),
            self.category.ok_or(NO_CATEGORY)?
        ))
    }

    async fn catalog(&self) -> CheckResult {
        let answer = self.get("/api/v2/attributes?per_page=5").await?;
        Self::expect(&answer, 200, "/api/v2/attributes")?;
        let total = answer.body["data"]["total"].as_i64().or_else(|| {
            answer.body["data"]["items"]
                .as_array()
                .map(|items| items.len() as i64)
        });
        match total {
            Some(total) if total > 0 => Ok(format!("{total} attributes in the catalog")),
            _ => Err("the catalog is empty".into()),
        }
    }

    async fn error_contract(&self) -> CheckResult {
        let answer = self
            .get("/api/v2/marketplace/categories/not-a-number/attributes")
            .await?;
        Self::expect(&answer, 400, "a malformed category id")?;
        match answer.body["error"]
            .as_str()
            .or_else(|| answer.body["error"]["key"].as_str())
        {
            Some(key) if key.starts_with("errors.") => Ok(format!("400 with key {key}")),
            _ => Err(format!("400 without an i18n key: {}", answer.body)),
        }
    }

    async fn openapi(&self) -> CheckResult {
        let answer = self.get("/openapi.json").await?;
        Self::expect(&answer, 200, "/openapi.json")?;
        let paths = answer.body["paths"].as_object().map_or(0, |p| p.len());
        if paths < 10 {
            return Err(format!("only {paths} paths documented"));
        }
        Ok(format!("{paths} paths documented"))
    }

    // --- performance ---

    /// Sends the bounded probe: valid reads across the public routes, four at a time. Every
    /// answer but a 2xx (or a 304) counts as an error: a fast 400 is not a served read.
    async fn probe(&self) -> (Vec<Duration>, usize) {
        let mut paths = vec!["/api/v2/attributes?per_page=20".to_owned()];
        if let Some(category) = self.category {
            paths.push(format!(
                "/api/v2/marketplace/categories/{category}/attributes"
            ));
            paths.push(format!(
                "/api/v1/marketplace/categories/{category}/attributes"
            ));
        }
        if let Some(listing) = self.listing {
            paths.push(format!("/api/v2/marketplace/listings/{listing}/attributes"));
        }
        let mut latencies = Vec::with_capacity(self.args.probe_requests);
        let mut errors = 0;
        for chunk in (0..self.args.probe_requests).collect::<Vec<_>>().chunks(4) {
            let requests = chunk.iter().map(|i| {
                let path = &paths[i % paths.len()];
                async move {
                    let started = Instant::now();
                    let answer = self.get(path).await;
                    (started.elapsed(), answer.map(|a| a.status))
                }
            });
            for (elapsed, status) in futures_util::future::join_all(requests).await {
                latencies.push(elapsed);
                if !matches!(status, Ok(200..=299 | 304)) {
                    errors += 1;
                }
            }
        }
        latencies.sort();
        (latencies, errors)
    }

    // --- feature ---

    async fn flags_phase(&self) -> CheckResult {
        let token = Self::first(&self.args.admin_token)
            .ok_or("no admin token (ADMIN_API_TOKEN or --admin-token)")?;
        let answer = self
            .internal("/api/v2/admin/attributes/feature-status", Some(token))
            .await?;
        Self::expect(&answer, 200, "feature-status")?;
        let phase = answer.body["data"]["phase"]
            .as_str()
            .unwrap_or("none")
            .to_owned();
        match &self.args.expect_phase {
            Some(expected) if *expected != phase => Err(format!(
                "the flags mean phase '{phase}', expected '{expected}'"
            )),
            Some(_) => Ok(format!("phase '{phase}' as expected")),
            None => Ok(format!("phase '{phase}' (no --expect-phase given)")),
        }
    }

    async fn metric(&self, name: &str) -> Result<f64, String> {
        let answer = self.internal("/metrics", None).await?;
        Self::expect(&answer, 200, "/metrics")?;
        let text = answer.body.as_str().unwrap_or_default();
        Ok(text
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    async fn cache_effective(&self) -> CheckResult {
        let hits = "unified_attributes_cache_hits_total{cache=\"responses\"}";
        let before = self.metric(hits).await?;
        let path = format!(
            "/api/v2/marketplace/categories/{}/attributes",
            self.category.ok_or(NO_CATEGORY)?
        );
        let first = self.get(&path).await?;
        Self::expect(&first, 200, &path)?;
        for _ in 0..3 {
            self.get(&path).await?;
        }
        let after = self.metric(hits).await?;
        if after < before + 3.0 {
            return Err(format!(
                "repeated reads did not hit the cache ({before} → {after} hits)"
            ));
        }
        // HTTP caching on top: the same ETag answers 304.
        let etag = first
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .ok_or("no ETag on a public read")?
            .to_owned();
        let mut request = self.client.get(format!("{}{path}", self.base));
        request = request.insert_header(("If-None-Match", etag));
        let status = request.send().await.map_err(|e| e.to_string())?.status();
        if status.as_u16() != 304 {
            return Err(format!("If-None-Match answered {status}, expected 304"));
        }
        Ok(format!(
            "{} cache hits for 3 repeated reads; ETag revalidates with 304",
            after - before
        ))
    }

    // --- integration ---

    async fn v1_v2_agree(&self) -> CheckResult {
        let v2 = self
            .get(&format!(
                "/api/v2/marketplace/categories/{}/attributes",
                self.category.ok_or(NO_CATEGORY)?
            ))
            .await?;
        let v1 = self
            .get(&format!(
                "/api/v1/marketplace/categories/{}/attributes",
                self.category.ok_or(NO_CATEGORY)?
            ))
            .await?;
        Self::expect(&v1, 200, "v1 category attributes")?;
        let (v1_codes, v2_codes) = (Self::codes(&v1.body), Self::codes(&v2.body));
        if v1_codes.is_empty() || v1_codes != v2_codes {
            return Err(format!("v1 {v1_codes:?} vs v2 {v2_codes:?}"));
        }
        Ok(format!(
            "v1 and v2 list the same {} attributes",
            v1_codes.len()
        ))
    }

    /// Writes a listing's values back unchanged and reads them: the write path works and
    /// loses nothing, and no data changes.
    async fn write_then_read(&self) -> CheckResult {
        let token = Self::first(&self.args.writer_token)
            .ok_or("no writer token (WRITER_API_TOKEN or --writer-token)")?;
        let listing = self.args.write_listing.ok_or("no --write-listing")?;
        let path = format!("/api/v2/marketplace/listings/{listing}/attributes");
        let before = self.get(&path).await?;
        Self::expect(&before, 200, &path)?;
        let values: serde_json::Map<String, Json> = before.body["data"]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                // A value with a unit is written as `{"value", "unit"}`, as it was read.
                let value = match v.get("unit") {
                    Some(unit) => serde_json::json!({"value": v["value"], "unit": unit}),
                    None => v["value"].clone(),
                };
                Some((v["code"].as_str()?.to_owned(), value))
            })
            .collect();
        if values.is_empty() {
            return Err(format!("listing {listing} has no values to write back"));
        }
        let written = self
            .send(
                "PUT",
                format!("{}{path}", self.base),
                Some(token),
                Some(Json::Object(values.clone()).to_string()),
            )
            .await?;
        Self::expect(&written, 200, "PUT of the same values")?;
        let after = self.get(&path).await?;
        if after.body["data"]["values"] != before.body["data"]["values"] {
            return Err("the values read after the write differ from those written".into());
        }
        Ok(format!(
            "{} values written back and read unchanged",
            values.len()
        ))
    }

    // --- monitoring ---

    async fn metrics_exported(&self) -> CheckResult {
        let answer = self.internal("/metrics", None).await?;
        Self::expect(&answer, 200, "/metrics")?;
        let text = answer.body.as_str().unwrap_or_default();
        let missing: Vec<&str> = [
            "unified_attributes_requests_total",
            "unified_attributes_errors_total",
            "unified_attributes_cache_hits",
            "unified_attributes_response_time",
        ]
        .into_iter()
        .filter(|name| !text.contains(&format!("# TYPE {name} ")))
        .collect();
        if missing.is_empty() {
            Ok("the four seed metrics are exported".into())
        } else {
            Err(format!("missing: {missing:?}"))
        }
    }

    async fn health(&self) -> CheckResult {
        for path in ["/health/live", "/health/ready"] {
            let answer = self.get(path).await?;
            Self::expect(&answer, 200, path)?;
        }
        Ok("live and ready".into())
    }
}

/// Entities of each kind the parity check compares.
const PARITY_SAMPLE: i64 = 200;

/// The database checks, on their own connection.
async fn database_checks(url: &str) -> Vec<(&'static str, CheckResult)> {
    let storage = match storage::Storage::connect(url, storage::PoolSettings::new(2)).await {
        Ok(storage) => storage,
        Err(err) => {
            let failed = Err(format!("cannot connect: {err}"));
            return vec![
                ("schema", failed.clone()),
                ("integrity", failed.clone()),
                ("parity", failed),
            ];
        }
    };
    let schema = match storage.pending_migrations().await {
        Ok(0) => Ok(format!(
            "{}: every migration applied",
            storage.backend_name()
        )),
        Ok(n) => Err(format!("{n} migrations are not applied")),
        Err(err) => Err(err.to_string()),
    };
    // The marketplace owns listings and products and may hard-delete them; their unified
    // values are then swept (`sweep-orphans`), not a broken invariant of ours: reported, and
    // the check passes.
    let integrity = match storage.orphaned_values().await {
        Ok(0) => Ok("no unified value without its entity".into()),
        Ok(n) => Ok(format!(
            "{n} unified values belong to entities the marketplace deleted: `sweep-orphans` removes them"
        )),
        Err(err) => Err(err.to_string()),
    };
    // Compared now, on a sample: the last recorded verify may be days old.
    let parity = match storage.migration_state().await {
        Ok(state) if state.archived => Ok("legacy is archived: unified is the only store".into()),
        // Dual-write is off (the unified phase): legacy is behind by design until a reverse
        // sync, so the stores are not expected to agree.
        Ok(state) if state.unified_only_writes_pending_sync => Ok(
            "unified-only writes since dual-write went off: legacy is behind by design (sync-legacy brings it up to date)"
                .into(),
        ),
        Ok(_) => match storage.verify_sample(PARITY_SAMPLE).await {
            Ok(report) if report.drifted == 0 => Ok(format!(
                "{} entities compared now (up to {PARITY_SAMPLE} of each kind): none drifted, {} quarantined values left out",
                report.checked, report.quarantined
            )),
            Ok(report) => Err(format!(
                "{} of {} entities compared now differ between the stores",
                report.drifted, report.checked
            )),
            Err(err) => Err(err.to_string()),
        },
        Err(err) => Err(err.to_string()),
    };
    vec![
        ("schema", schema),
        ("integrity", integrity),
        ("parity", parity),
    ]
}

/// Runs every check in order; the report says what passed, failed and was skipped.
pub async fn run(args: ValidateArgs, database_url: Option<String>) -> Report {
    let base = args.base_url.trim_end_matches('/').to_owned();
    let internal = args
        .internal_url
        .as_deref()
        .unwrap_or(&base)
        .trim_end_matches('/')
        .to_owned();
    // Real ids, never the demo's: given, or found in the database the service uses.
    let (mut category, mut listing) = (args.category, args.listing);
    if let Some(url) = database_url.as_deref()
        && (category.is_none() || listing.is_none())
        && let Ok(storage) = storage::Storage::connect(url, storage::PoolSettings::new(1)).await
        && let Ok((found_category, found_listing)) = storage.sample_ids().await
    {
        category = category.or(found_category);
        listing = listing.or(found_listing);
    }
    let probe = Probe {
        client: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
        base: base.clone(),
        internal,
        args,
        category,
        listing,
    };
    let mut checks = Vec::new();
    // `Err(reason)`: the check was skipped, and says why.
    let mut record = |category, name, started: Instant, result: Result<CheckResult, String>| {
        let (outcome, detail) = match result {
            Ok(Ok(detail)) => (Outcome::Pass, detail),
            Ok(Err(detail)) => (Outcome::Fail, detail),
            Err(reason) => (Outcome::Skipped, reason),
        };
        checks.push(Check {
            category,
            name,
            outcome,
            detail,
            millis: started.elapsed().as_millis(),
        });
    };

    // A check that needs what is not known is skipped with the reason.
    let known_category = probe.category.is_some();
    fn needs_category(known: bool, check: CheckFuture<'_>) -> Runnable<'_> {
        if known {
            Ok(check)
        } else {
            Err(NO_CATEGORY.to_owned())
        }
    }
    let api: Vec<(&str, Runnable)> = vec![
        (
            "category_attributes",
            needs_category(known_category, Box::pin(probe.category_attributes())),
        ),
        ("catalog", Ok(Box::pin(probe.catalog()))),
        ("error_contract", Ok(Box::pin(probe.error_contract()))),
        ("openapi", Ok(Box::pin(probe.openapi()))),
    ];
    for (name, check) in api {
        let t = Instant::now();
        let result = match check {
            Ok(check) => Ok(check.await),
            Err(reason) => Err(reason),
        };
        record("api", name, t, result);
    }

    let t = Instant::now();
    match database_url {
        Some(url) => {
            for (name, result) in database_checks(&url).await {
                record("database", name, t, Ok(result));
            }
        }
        None => {
            for name in ["schema", "integrity", "parity"] {
                record(
                    "database",
                    name,
                    t,
                    Err("no --database-url given".to_owned()),
                );
            }
        }
    }

    let t = Instant::now();
    let (latencies, errors) = probe.probe().await;
    let count = latencies.len().max(1);
    let p95 = latencies
        .get((count * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let p95_ms = p95.as_secs_f64() * 1000.0;
    let limit = probe.args.max_p95_ms;
    let measured = format!("p95 {p95_ms:.1} ms over {count} requests (limit {limit} ms)");
    record(
        "performance",
        "p95_latency",
        t,
        Ok(if p95_ms < limit {
            Ok(measured)
        } else {
            Err(measured)
        }),
    );
    let rate = errors as f64 / count as f64;
    record(
        "performance",
        "error_rate",
        t,
        Ok(if rate < 0.001 {
            Ok(format!("{errors} errors in {count} requests"))
        } else {
            Err(format!(
                "{errors} errors in {count} requests ({:.2} %, limit 0.1 %)",
                rate * 100.0
            ))
        }),
    );

    let write_check = if probe.args.write_listing.is_some() {
        Ok(Box::pin(probe.write_then_read()) as CheckFuture)
    } else {
        Err("read-only: pass --write-listing ID (a listing kept for this check) to check the write path".to_owned())
    };
    let rest: Vec<(&str, Vec<(&str, Runnable)>)> = vec![
        (
            "feature",
            vec![
                ("flags_phase", Ok(Box::pin(probe.flags_phase()))),
                (
                    "cache_effective",
                    needs_category(known_category, Box::pin(probe.cache_effective())),
                ),
            ],
        ),
        (
            "integration",
            vec![
                (
                    "v1_v2_agree",
                    needs_category(known_category, Box::pin(probe.v1_v2_agree())),
                ),
                ("write_then_read", write_check),
            ],
        ),
        (
            "monitoring",
            vec![
                ("metrics_exported", Ok(Box::pin(probe.metrics_exported()))),
                ("health", Ok(Box::pin(probe.health()))),
            ],
        ),
    ];
    for (category, checks) in rest {
        for (name, check) in checks {
            let t = Instant::now();
            let result = match check {
                Ok(check) => Ok(check.await),
                Err(reason) => Err(reason),
            };
            record(category, name, t, result);
        }
    }

    let count = |outcome| checks.iter().filter(|c| c.outcome == outcome).count();
    Report {
        base_url: base,
        passed: count(Outcome::Pass),
        failed: count(Outcome::Fail),
        skipped: count(Outcome::Skipped),
        checks,
    }
}
