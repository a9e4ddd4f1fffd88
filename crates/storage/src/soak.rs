//! The soak before the archive. Archiving ends legacy for good, so the unified phase must have
//! served for a while (24 h by default) before it: long enough for the alerts, the shadow
//! diffs and the marketplace's own reports to have said something. An operator may archive
//! sooner, naming a reason; the manifest keeps who waived the soak and why.

use std::time::Duration;

use serde::Serialize;

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::stats::record_queries;

/// How long the archive waits after the switch to the unified phase unless told otherwise.
pub const DEFAULT_SOAK_HOURS: u32 = 24;

/// What `archive` asks of the unified phase before it moves anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Soak {
    /// How long the flags must have meant the unified phase.
    pub at_least: Duration,
    /// Archive sooner all the same: who, and why (kept in the manifest).
    pub waived: Option<Waiver>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiver {
    pub actor: String,
    pub reason: String,
}

impl Waiver {
    fn recorded(&self, soaked: Option<Duration>, at_least: Duration) -> String {
        format!(
            "soak of {} waived by {} after {} of the unified phase: {}",
            human(at_least),
            self.actor,
            soaked.map_or_else(|| "an unknown time".to_owned(), human),
            self.reason
        )
    }
}

/// The last change of the flags into the unified phase from another one, seconds ago; the
/// phase names are [`flags::Phase::as_str`]'s.
const UNIFIED_SINCE: Sql = Sql {
    pg: "SELECT CAST(EXTRACT(EPOCH FROM now() - MAX(changed_at)) AS DOUBLE PRECISION)
        FROM flag_audit WHERE new_phase = 'unified' AND old_phase <> 'unified'",
    lite: "SELECT (julianday('now') - julianday(MAX(changed_at))) * 86400.0
        FROM flag_audit WHERE new_phase = 'unified' AND old_phase <> 'unified'",
};

const RECORD_WAIVER: Sql = Sql::same(
    "UPDATE archive_manifests SET waiver = $1 WHERE id = (SELECT MAX(id) FROM archive_manifests)",
);

/// How long the flags in force have meant the unified phase, as the flag audit tells; `None`
/// when it does not (the phase came from the environment before it was audited).
pub(crate) async fn unified_for<B: Backend>(conn: &mut Conn<B>) -> Result<Option<Duration>> {
    record_queries(1);
    let seconds: Option<f64> = on_dialect!(B::dialect(conn), UNIFIED_SINCE, |c, sql| {
        sqlx::query_scalar(sql).fetch_one(&mut *c).await?
    });
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Refuses an archive before the soak, unless waived; the waiver's text for the manifest.
pub(crate) async fn check<B: Backend>(conn: &mut Conn<B>, soak: &Soak) -> Result<Option<String>> {
    if soak.at_least.is_zero() {
        return Ok(None);
    }
    let soaked = unified_for::<B>(conn).await?;
    if soaked.is_some_and(|soaked| soaked >= soak.at_least) {
        return Ok(None);
    }
    if let Some(waiver) = &soak.waived {
        return Ok(Some(waiver.recorded(soaked, soak.at_least)));
    }
    Err(StorageError::Conflict(match soaked {
        Some(soaked) => format!(
            "the unified phase has served for {} of the {} the archive waits for: archive after \
             another {}, or now with `archive --now --reason TEXT` (recorded in the manifest)",
            human(soaked),
            human(soak.at_least),
            human(soak.at_least - soaked)
        ),
        None => format!(
            "the flag audit does not say when the unified phase began (set from the environment \
             before it was audited?): the archive waits for {} of it. Archive with `archive --now \
             --reason TEXT` (recorded in the manifest)",
            human(soak.at_least)
        ),
    }))
}

/// Keeps the waiver in the manifest just saved, in the archive's transaction.
pub(crate) async fn record_waiver<B: Backend>(conn: &mut Conn<B>, waiver: &str) -> Result<()> {
    record_queries(1);
    on_dialect!(B::dialect(conn), RECORD_WAIVER, |c, sql| {
        sqlx::query(sql)
            .bind(waiver)
            .execute(&mut *c)
            .await
            .map(drop)?
    });
    Ok(())
}

/// `1 h 05 min`, `42 s`: a span as an operator reads it.
pub fn human(span: Duration) -> String {
    let seconds = span.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_the_largest_unit_that_fits() {
        assert_eq!(human(Duration::from_secs(6)), "6 s");
        assert_eq!(human(Duration::from_secs(125)), "2 min 05 s");
        assert_eq!(human(Duration::from_secs(24 * 3600 + 300)), "24 h 05 min");
    }
}
