//! The tracing subscriber, built once at start: readable lines for people, JSON in production.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured filter.
///
/// The service logs to stdout, as containers expect; the other subcommands log to stderr, so
/// that their stdout carries only the report (`--json` output stays parseable).
pub fn init(settings: &TelemetrySettings, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let filter = EnvFilter::new(&settings.filter);
        // PostgreSQL's notices about our idempotent DDL ("… already exists, skipping") are
        // expected at every start, not news.
        match "sqlx::postgres::notice=warn".parse() {
            Ok(quiet) => filter.add_directive(quiet),
            Err(_) => filter,
        }
    });
    // Colours only for a person at a terminal: not in files, pipes or log collectors.
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal && std::env::var_os("NO_COLOR").is_none())
        .with_writer(move || -> Box<dyn std::io::Write> {
            if to_stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match settings.format {
        LogFormat::Json => builder.json().fmt_fields(JsonSpanFields).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The root span of every request: its method, path and request id, on every line logged while
/// it is handled. Unlike the default it does not match the path against the routes again to
/// name the route (metrics label requests by route template on their own), and it records
/// nothing once the request is answered: no line is logged in the span after that (span events
/// are off), so the status and error it held were written nowhere, and each field recorded
/// made the JSON formatter parse the span's fields back and write them again — 25,000
/// instructions a request, a sixth of an uncached read's at the `info` level production runs.
/// The status is in the request metrics; an error is logged where it happens, in this span.
#[derive(Debug)]
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        // A cheap clone, formatted only if the span is recorded: a plain string in the log.
        let request_id = request
            .extensions()
            .get::<crate::request_id::RequestId>()
            .map(|id| id.0.clone());
        tracing::info_span!(
            "request",
            http.method = request.method().as_str(),
            http.target = %Bounded(request.path()),
            request_id = request_id.as_deref().unwrap_or(""),
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        _: tracing::Span,
        _: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
    }
}

/// A span's fields as the JSON format keeps them — one JSON object as text, which the line
/// formatter parses back for each line logged in the span — written straight into that text.
/// `tracing-subscriber`'s own (`JsonFields`) gathers them into a map of JSON values and writes
/// that through an adaptor that checks every small write for UTF-8: 8,700 instructions for a
/// request's root span, on every request at `info`, where lines in the span are rare.
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut entries = JsonEntries::new();
        fields.record(&mut entries);
        writer.write_char('{')?;
        writer.write_str(entries.as_str()?)?;
        writer.write_char('}')
    }

    /// Fields recorded later join the object (one written again would appear twice in the
    /// text; the line formatter keeps the later).
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut entries = JsonEntries::new();
        fields.record(&mut entries);
        let added = entries.as_str()?;
        if added.is_empty() {
            return Ok(());
        }
        let object = &mut current.fields;
        if object.len() < 2 {
            object.clear();
            object.push('{');
        } else {
            object.pop(); // its closing brace
            if object.len() > 1 {
                object.push(',');
            }
        }
        object.push_str(added);
        object.push('}');
        Ok(())
    }
}

/// The `"name":value` pairs of a set of fields, comma-separated, escaped by `serde_json`.
struct JsonEntries {
    json: Vec<u8>,
    /// Where `Debug` and `Display` values are formatted before they are written as strings.
    text: String,
    failed: bool,
}

impl JsonEntries {
    /// Room for a request span's fields at once (growing there from nothing took six copies).
    fn new() -> Self {
        Self {
            json: Vec::with_capacity(256),
            text: String::with_capacity(128),
            failed: false,
        }
    }

    fn entry(&mut self, field: &Field, value: impl serde::Serialize) {
        if !self.json.is_empty() {
            self.json.push(b',');
        }
        let written = serde_json::to_writer(&mut self.json, field.name()).and_then(|()| {
            self.json.push(b':');
            serde_json::to_writer(&mut self.json, &value)
        });
        self.failed |= written.is_err();
    }

    fn as_str(&self) -> Result<&str, std::fmt::Error> {
        if self.failed {
            return Err(std::fmt::Error);
        }
        std::str::from_utf8(&self.json).map_err(|_| std::fmt::Error)
    }
}

impl Visit for JsonEntries {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.entry(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        self.failed |= write!(text, "{value:?}").is_err();
        self.entry(field, text.as_str());
        self.text = text;
    }
}

/// The longest text a log line carries from a request.
const LOGGED_TEXT_LIMIT: usize = 256;

/// Text from a request as logged: at most [`LOGGED_TEXT_LIMIT`] characters, then how long it was.
#[derive(Debug)]
pub struct Bounded<'a>(pub &'a str);

impl std::fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(LOGGED_TEXT_LIMIT) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// At most one log line a second for each kind of failure: an outage or a flood of bad
/// requests must not drown the log (and its disk). The next line says how many were left out.
#[derive(Debug, Default)]
pub struct LogBudget {
    last_second: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    pub const fn new() -> Self {
        Self {
            last_second: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written now (`n` lines were left out since the last one).
    pub fn allow(&self, now_second: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_second.load(Relaxed);
        if now_second > last
            && self
                .last_second
                .compare_exchange(last, now_second, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }

    /// [`LogBudget::allow`] on the wall clock.
    pub fn allow_now(&self) -> Option<u64> {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allow(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_request_text_is_cut_in_the_log_and_says_how_long_it_was() {
        let path = format!("/api/v2/marketplace/listings/{}", "x".repeat(60_000));
        let logged = Bounded(&path).to_string();
        assert!(logged.chars().count() < 300, "{}", logged.len());
        assert!(logged.ends_with("… (60029 bytes)"), "{logged}");
        assert_eq!(Bounded("/health/live").to_string(), "/health/live");
        // Cut on a character, not inside one.
        let cyrillic = "ж".repeat(1_000);
        assert!(Bounded(&cyrillic).to_string().starts_with(&"ж".repeat(256)));
    }

    /// The JSON lines logged inside two nested spans, their fields formatted by `fields`.
    fn json_lines<N>(fields: N) -> Vec<serde_json::Value>
    where
        N: for<'writer> FormatFields<'writer> + Send + Sync + 'static,
    {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .expect("the log buffer")
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .fmt_fields(fields)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let path = "/api/v2/marketplace/listings/6/attributes?q=\"ж\\\n\u{1}";
            let request = tracing::info_span!(
                "request",
                http.method = %actix_web::http::Method::GET,
                http.target = %Bounded(path),
                request_id = "gw-4712",
                r#type = 7_u64,
                later = tracing::field::Empty,
                ratio = 0.5,
                flag = true,
            );
            let _request = request.enter();
            tracing::warn!(detail = "first", "inside the request span");
            request.record("later", "recorded after the start");
            request.record("request_id", "replaced");
            let empty = tracing::info_span!("empty");
            let _empty = empty.enter();
            tracing::error!(code = 3, "inside both spans");
        });
        let text = String::from_utf8(lines.0.lock().expect("the log buffer").clone())
            .expect("UTF-8 lines");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn span_fields_are_logged_as_tracing_subscribers_own_json_fields_log_them() {
        let ours = json_lines(JsonSpanFields);
        let theirs = json_lines(tracing_subscriber::fmt::format::JsonFields::new());
        assert_eq!(ours.len(), 2);
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(ours["span"], theirs["span"], "{ours}");
            assert_eq!(ours["spans"], theirs["spans"], "{ours}");
            assert_eq!(ours["fields"], theirs["fields"], "{ours}");
        }
        let span = &ours[1]["spans"][0];
        assert_eq!(
            span["http.target"],
            "/api/v2/marketplace/listings/6/attributes?q=\"ж\\\n\u{1}"
        );
        assert_eq!(span["http.method"], "GET");
        assert_eq!(span["type"], 7);
        assert_eq!(span["later"], "recorded after the start");
        assert_eq!(span["request_id"], "replaced");
        assert_eq!(ours[0]["span"]["request_id"], "gw-4712");
        assert_eq!(ours[1]["span"]["name"], "empty");
    }

    #[test]
    fn a_kind_logs_once_a_second_and_then_says_how_many_it_left_out() {
        let budget = LogBudget::new();
        assert_eq!(budget.allow(10), Some(0));
        assert_eq!(budget.allow(10), None);
        assert_eq!(budget.allow(10), None);
        assert_eq!(budget.allow(11), Some(2));
        assert_eq!(budget.allow(11), None);
    }
}
