//! `/api/stats` in resalloc-webui's shape, for Nagios or Zabbix checks written against
//! resalloc: per pool, the start success rate (EMA), the average start time of successful starts
//! (EMA, seconds), and the times of the last successful start and the last attempt (epoch
//! seconds).

use axum::Json;
use axum::extract::State;
use sea_orm::EntityTrait;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::auth::current::ApiError;
use crate::entities::pools;
use app::error::AppError;

pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = pools::Entity::find().all(&state.db).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read pool statistics");
        ApiError(AppError::Internal)
    })?;
    let secs = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
    let mut out = Map::new();
    for p in rows {
        out.insert(
            p.name,
            json!({
                "startup_success_rate": p.start_success_rate,
                "startup_time_avg": p.start_time_avg,
                "last_successful_start": secs(p.last_successful_start_ms),
                "last_attempt_to_start": secs(p.last_attempt_to_start_ms),
            }),
        );
    }
    Ok(Json(Value::Object(out)))
}
