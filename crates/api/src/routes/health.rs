//! Kubernetes probes: liveness says the process serves; readiness says the database answers
//! and every migration is applied.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::AppState;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.storage.ready().await {
        Ok(true) => HttpResponse::Ok()
            .json(json!({"status": "ready", "database": state.storage.backend_name()})),
        Ok(false) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "reason": "migrations pending"})),
        Err(err) => {
            tracing::warn!(error = %storage::Logged(&err), "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "not_ready", "reason": "database unreachable"}))
        }
    }
}
