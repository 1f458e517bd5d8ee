//! `/healthz` (the process answers) and `/readyz` (the database answers, its schema is
//! current and the engine has not failed), as JSON for load balancers and on-call humans
//! alike. `engine` says `running here` only while this process runs engine passes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "version": app::VERSION }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if let Err(e) = crate::db::ping(&state.db).await {
        tracing::warn!(error = %e, "readiness: the database does not answer");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "unreachable" })),
        );
    }
    match crate::db::pending_migrations(&state.db).await {
        Ok(pending) if pending.is_empty() => {
            let engine = state.engine.stats();
            if engine.failed {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "unavailable",
                        "database": "ok",
                        "migrations": "current",
                        "engine": "failed",
                        "engine_error": state.engine.failure(),
                    })),
                );
            }
            let engine = if !state.config.engine {
                "off"
            } else if engine.leader {
                "running here"
            } else {
                "standby"
            };
            (
                StatusCode::OK,
                Json(json!({
                    "status": "ready",
                    "database": "ok",
                    "migrations": "current",
                    "engine": engine,
                })),
            )
        }
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "unavailable", "database": "ok", "pending_migrations": pending }),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read the migration table");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "ok", "migrations": "unknown" })),
            )
        }
    }
}
