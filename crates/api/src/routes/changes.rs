//! The change feed for downstream consumers (the search indexer, caches of other services):
//! every committed change of attribute values — through this service, or a write that
//! bypassed it and was captured from the legacy tables — once per cursor, never before its
//! commit, in commit order per entity (see `storage::capture`).

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::Envelope;

/// The longest a request may wait for a change.
const MAX_WAIT_SECONDS: u64 = 30;
/// How often a waiting request looks again.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The last position the consumer has; 0 (the default) for the oldest kept.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// 1 to 1,000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Seconds to wait for a change when there is none yet (long poll); 0 to 30, 0 by default.
    #[param(minimum = 0, maximum = 30)]
    wait: Option<u64>,
}

/// `GET /api/v2/admin/changes?after=&limit=&wait=`: the changes after a position, in order,
/// and the position to ask after next.
#[utoipa::path(get, path = "/api/v2/admin/changes", tag = "admin",
    params(FeedQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`changes` (position, entity_type, entity_id, source, changed_at) and `next`", body = Object),
        (status = 400, description = "Invalid query", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn changes(
    _admin: Admin,
    query: web::Query<FeedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::InvalidQuery("after must be 0 or more".into()));
    }
    let limit = crate::routes::admin_limit(query.limit)?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::InvalidQuery(format!(
            "wait must be at most {MAX_WAIT_SECONDS} seconds"
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let changes = state.storage.changes_after(after, limit).await?;
        if !changes.is_empty() || Instant::now() >= deadline {
            let next = changes.last().map_or(after, |change| change.position);
            return Ok(HttpResponse::Ok().json(Envelope::new(json!({
                "changes": changes,
                "next": next,
            }))));
        }
        tokio::time::sleep(POLL).await;
    }
}
