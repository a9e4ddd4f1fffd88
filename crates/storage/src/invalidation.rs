//! What a committed write made stale, so caches can drop exactly that — in this process, and
//! (PostgreSQL) in every replica through `NOTIFY`, which is delivered only if the write commits.

pub use domain::Invalidation;

/// The channel replicas listen on.
pub const CHANNEL: &str = "unified_attributes_invalidations";

/// PostgreSQL refuses payloads of 8000 bytes or more; past this size we send `Everything`.
const MAX_PAYLOAD: usize = 7_000;

/// The `NOTIFY` payload for a set of invalidations.
pub(crate) fn payload(invalidations: &[Invalidation]) -> String {
    let json = serde_json::to_string(invalidations).unwrap_or_default();
    if json.is_empty() || json.len() > MAX_PAYLOAD {
        return r#"[{"drop":"everything"}]"#.to_owned();
    }
    json
}

/// Tells every replica (PostgreSQL) what the transaction made stale, once it commits.
pub(crate) async fn notify(
    conn: crate::dialect::Dialect<'_>,
    invalidations: &[Invalidation],
) -> crate::error::Result<()> {
    crate::notify::notify(conn, CHANNEL, &payload(invalidations)).await
}

/// Reads a payload; an unreadable one (a newer replica's?) drops everything to stay safe.
pub fn parse_payload(payload: &str) -> Vec<Invalidation> {
    serde_json::from_str(payload).unwrap_or_else(|err| {
        tracing::warn!(%err, payload, "unreadable invalidation; dropping every cached entry");
        vec![Invalidation::Everything]
    })
}

#[cfg(test)]
mod tests {
    use domain::EntityRef;

    use super::*;

    #[test]
    fn payloads_round_trip() {
        let sent = vec![
            Invalidation::entity(EntityRef::listing(6)),
            Invalidation::Categories {
                ids: vec![1301, 1310, 1311],
            },
            Invalidation::Catalog,
        ];
        assert_eq!(parse_payload(&payload(&sent)), sent);
    }

    #[test]
    fn oversized_or_unreadable_payloads_mean_everything() {
        let huge = vec![Invalidation::Categories {
            ids: (0..5_000).collect(),
        }];
        assert_eq!(parse_payload(&payload(&huge)), [Invalidation::Everything]);
        assert_eq!(parse_payload("garbage"), [Invalidation::Everything]);
    }
}
