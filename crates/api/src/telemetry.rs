//! The tracing subscriber, built once at start: readable lines for people, JSON in production.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        LogFormat::Json => builder.json().try_init(),
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
            http.method = %request.method(),
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
