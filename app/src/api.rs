//! What the browser and the server exchange: the data of each page, the server functions that
//! fetch it, and (server only) the [`Backend`] port through which those functions reach the
//! database without this crate knowing about it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One pool as the public status page shows it (the columns of resalloc-webui's `/pools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub description: Option<String>,
    /// `active`, `paused`, `draining` or `retired`.
    pub state: String,
    pub tags: Vec<String>,
    pub tags_on_demand: Vec<String>,
    pub max: i64,
    pub up: i64,
    pub ready: i64,
    pub taken: i64,
    pub starting: i64,
    pub delete_requested: i64,
    pub deleting: i64,
    pub releasing: i64,
    /// Exponential moving average of start outcomes (1 = every start succeeded).
    pub start_success_rate: Option<f64>,
    /// Exponential moving average of successful start times, in seconds.
    pub start_time_avg: Option<f64>,
}

/// Waiting tickets that asked for the same tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueGroup {
    pub tags: Vec<String>,
    pub waiting: i64,
    pub oldest_age_secs: f64,
    /// False when no active pool offers all of these tags: such tickets never resolve.
    pub servable: bool,
}

/// Everything the public status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub pools: Vec<PoolStatus>,
    pub queue: Vec<QueueGroup>,
    /// Unix time (seconds) at which the server took this snapshot.
    pub generated_at: i64,
}

/// The server side of the UI's data, provided through Leptos context by the server crate.
///
/// Implementations do the authorization: a server function only forwards to one method.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn status(&self) -> Result<StatusSnapshot, AppError>;
}

/// The backend of the current request.
#[cfg(feature = "ssr")]
pub fn backend() -> Result<std::sync::Arc<dyn Backend>, AppError> {
    use_context::<std::sync::Arc<dyn Backend>>().ok_or_else(|| {
        leptos::logging::error!("no Backend in the Leptos context: the server did not provide it");
        AppError::Internal
    })
}

/// The public status: pools, their machines and the queue of waiting tickets.
#[server(prefix = "/api/ui", endpoint = "status")]
pub async fn get_status() -> Result<StatusSnapshot, AppError> {
    backend()?.status().await
}
