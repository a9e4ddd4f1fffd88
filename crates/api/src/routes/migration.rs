//! The migration's control panel for ops (admin token): the flags in force and their runtime
//! change (guarded, audited, applied by every replica), and the migration status in real
//! numbers from the database.

use actix_web::{HttpResponse, web};
use flags::Flags;
use serde::{Deserialize, Serialize};
use storage::{FlagAuditEntry, MigrationCounts};

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::Envelope;

/// How many audit entries the status shows.
const AUDIT_SHOWN: i64 = 20;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureStatus {
    #[schema(value_type = Object)]
    flags: Flags,
    /// The flags from the environment and settings, which runtime changes override.
    #[schema(value_type = Object)]
    configured: Flags,
    /// `configured`, or `runtime` once the admin API changed them.
    source: String,
    phase: String,
    phase_number: u8,
    #[schema(value_type = Object)]
    state: flags::MigrationState,
    /// The latest changes, newest first.
    #[schema(value_type = Vec<Object>)]
    audit: Vec<FlagAuditEntry>,
}

async fn status(state: &AppState) -> Result<FeatureStatus, ApiError> {
    let in_force = state.flags_in_force();
    Ok(FeatureStatus {
        flags: in_force.flags,
        configured: in_force.configured,
        source: in_force.source.to_owned(),
        phase: in_force.phase.as_str().to_owned(),
        phase_number: in_force.phase.number(),
        state: state.storage.migration_state().await?,
        audit: state.storage.flag_audit(AUDIT_SHOWN).await?,
    })
}

/// `GET /api/v2/admin/attributes/feature-status`
#[utoipa::path(get, path = "/api/v2/admin/attributes/feature-status", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The flags in force, their source, the phase and the latest changes", body = Object),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn feature_status(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Envelope::new(status(&state).await?)))
}

/// `PUT /api/v2/admin/attributes/feature-status`: changes flags without a restart. A change
/// that breaks a guardrail answers 409 with the rule, and nothing changes. `X-Actor` names
/// who asked, for the audit.
#[utoipa::path(put, path = "/api/v2/admin/attributes/feature-status", tag = "admin",
    request_body(content = crate::routes::admin_bodies::FlagsBody, description = "Any of use_unified, unified_percent (0–100), fallback, dual_write, shadow_percent (0–100)"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The flags now in force", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "The change breaks a guardrail; `rule` names it", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Unknown flag or value out of range", body = crate::error::ErrorView)))]
pub async fn change_flags(
    admin: Admin,
    body: web::Json<serde_json::Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let update: flags::FlagUpdate = serde_json::from_value(body.into_inner())
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    update
        .check()
        .map_err(|reason| ApiError::InvalidBody(reason.into()))?;
    let actor = admin.actor.clone();
    let current = state.flags();
    let change = match state
        .storage
        .change_flags(current, &actor, |flags| update.apply(flags))
        .await
    {
        Ok(change) => change,
        // Every rule the change breaks, not only the first: one fix, not one per try.
        Err(
            refused @ (storage::StorageError::Guardrail(_)
            | storage::StorageError::QuarantineUnsettled(_)),
        ) => {
            let migration = state.storage.migration_state().await?;
            let rules = update.apply(current).violations(Some(&current), &migration);
            return Err(if rules.len() > 1 {
                ApiError::Guardrails(rules, refused.to_string())
            } else {
                refused.into()
            });
        }
        Err(err) => return Err(err.into()),
    };
    state.set_flags(change.new, change.phase);
    tracing::info!(actor = %change.actor, old = ?change.old, new = ?change.new, phase = %change.new_phase, "flags changed at runtime");
    Ok(HttpResponse::Ok().json(Envelope::new(status(&state).await?)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MigrationStatus {
    phase: String,
    phase_number: u8,
    #[schema(value_type = Object)]
    flags: Flags,
    #[schema(value_type = Object)]
    state: flags::MigrationState,
    /// Rows in each store, counted now.
    #[schema(value_type = Object)]
    counts: MigrationCounts,
    /// Unified listing values per legacy listing value, in percent.
    listing_values_migrated_percent: f64,
    /// The backfill's checkpoint per entity kind: last id, migrated, quarantined, completed.
    #[schema(value_type = Vec<Object>)]
    backfill: Vec<storage::backfill::Checkpoint>,
    /// The last `verify` run, if any.
    #[schema(value_type = Object)]
    last_verify: Option<storage::verify::LastVerify>,
    /// Quarantined legacy values by entity kind and reason, the 50 most common.
    #[schema(value_type = Vec<Object>)]
    quarantine_by_reason: Vec<storage::backfill::QuarantineCount>,
    /// The manifest of the last `archive` or `restore-archive`, if any.
    #[schema(value_type = Object)]
    last_archive: Option<storage::archive::Manifest>,
}

/// `GET /api/v2/admin/attributes/migration-status`: real numbers, counted in the database.
#[utoipa::path(get, path = "/api/v2/admin/attributes/migration-status", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Phase, flags, state and row counts of both stores", body = Object),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn migration_status(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let in_force = state.flags_in_force();
    let counts = state.storage.migration_counts().await?;
    // Archived legacy tables (no count) were migrated in full before they moved.
    let migrated = match counts.legacy_listing_values {
        None | Some(0) => 100.0,
        Some(legacy) => (counts.unified_listing_values as f64 * 100.0 / legacy as f64).min(100.0),
    };
    Ok(HttpResponse::Ok().json(Envelope::new(MigrationStatus {
        phase: in_force.phase.as_str().to_owned(),
        phase_number: in_force.phase.number(),
        flags: in_force.flags,
        state: state.storage.migration_state().await?,
        counts,
        listing_values_migrated_percent: (migrated * 10.0).round() / 10.0,
        backfill: {
            let mut checkpoints = Vec::new();
            for kind in domain::EntityKind::ALL {
                checkpoints.push(state.storage.backfill_checkpoint(kind, false).await?);
            }
            checkpoints
        },
        last_verify: state.storage.last_verify().await?,
        quarantine_by_reason: state.storage.quarantine_by_reason(50).await?,
        last_archive: state.storage.last_archive_manifest().await?,
    })))
}

/// `GET /api/v2/admin/attributes/status`: the document of the `status` command — phase and
/// rung, the next step and what refuses it, the evidence, the running bulk operation and the
/// backfill's position, throttles, the quarantine and what of it blocks the cut-over, the last
/// verify and flag changes, the soak, the replicas.
#[utoipa::path(get, path = "/api/v2/admin/attributes/status", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The migration at a glance, as `status --json` prints it", body = Object),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn status_document(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let configured = state.flags_in_force().configured;
    let status = state
        .storage
        .status(configured, state.database.to_string(), state.archive_soak)
        .await?;
    Ok(HttpResponse::Ok().json(Envelope::new(status)))
}

/// `GET /api/v2/admin/attributes/shadow-diffs`: the latest disagreements shadow reads found.
#[utoipa::path(get, path = "/api/v2/admin/attributes/shadow-diffs", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Up to 50 recent differences, newest first", body = Object),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn shadow_diffs(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Envelope::new(state.shadow_diffs.recent())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// One attribute's code; all attributes when absent.
    attribute: Option<String>,
    /// 1 to 1,000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// `GET /api/v2/admin/attributes/quarantine`: the quarantine's totals and its values grouped by
/// attribute, value as users saw it and reason, most common first — what an operator resolves
/// or accepts.
#[utoipa::path(get, path = "/api/v2/admin/attributes/quarantine", tag = "admin",
    params(QuarantineQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Quarantined values by attribute, raw value and reason", body = Object),
        (status = 400, description = "Invalid query", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn quarantine(
    _admin: Admin,
    query: web::Query<QuarantineQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = crate::routes::admin_limit(query.limit)?;
    let values = state
        .storage
        .quarantine(query.attribute.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(Envelope::new(values)))
}
