//! Charts: SVG drawn on the server from the history the engine records, so they show without
//! JavaScript; the hydrated pages replace them as the live stream brings new ones.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Which stretch of history a chart covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ChartRange {
    /// The last 24 hours, one point every 5 minutes.
    #[default]
    Day,
    /// The last 90 days, one point an hour.
    Quarter,
}

impl ChartRange {
    /// The query value (`?range=`): `24h` or `90d`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChartRange::Day => "24h",
            ChartRange::Quarter => "90d",
        }
    }

    /// Reads `?range=`; anything else is the last 24 hours.
    pub fn parse(s: &str) -> ChartRange {
        match s {
            "90d" => ChartRange::Quarter,
            _ => ChartRange::Day,
        }
    }

    /// In words, for headings: "last 24 hours".
    pub fn words(self) -> &'static str {
        match self {
            ChartRange::Day => "last 24 hours",
            ChartRange::Quarter => "last 90 days",
        }
    }
}

/// One chart: its title, a sentence that says what it shows in numbers (its text
/// alternative), and the drawing (none while there is nothing to draw).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Stable, for element ids and tests: `machines`, `to-ready`, `start-success`, `usage-hours`,
    /// `usage-cost`.
    pub id: String,
    pub title: String,
    pub summary: String,
    /// An `<svg>` element, drawn on the server.
    pub svg: Option<String>,
}

/// The server side of the charts. Every method authorizes.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait ChartsBackend: Send + Sync + 'static {
    /// The charts of one pool, or of all pools for `pool == ""` (public, like the status page).
    async fn pool_charts(&self, pool: String, range: ChartRange) -> Result<Vec<Chart>, AppError>;
    /// A team's machine-hours and cost this month (its members and admins).
    async fn team_charts(&self, team: String) -> Result<Vec<Chart>, AppError>;
}

#[cfg(feature = "ssr")]
fn charts_backend() -> Result<std::sync::Arc<dyn ChartsBackend>, AppError> {
    use_context::<std::sync::Arc<dyn ChartsBackend>>().ok_or_else(|| {
        leptos::logging::error!("no ChartsBackend in the Leptos context");
        AppError::Internal
    })
}

/// The charts of one pool, or of all pools (`pool` empty).
#[server(prefix = "/api/ui", endpoint = "charts")]
pub async fn get_pool_charts(pool: String, range: ChartRange) -> Result<Vec<Chart>, AppError> {
    super::answer(match charts_backend() {
        Ok(b) => b.pool_charts(pool, range).await,
        Err(e) => Err(e),
    })
}

/// A team's usage charts.
#[server(prefix = "/api/ui", endpoint = "team_charts")]
pub async fn get_team_charts(team: String) -> Result<Vec<Chart>, AppError> {
    super::answer(match charts_backend() {
        Ok(b) => b.team_charts(team).await,
        Err(e) => Err(e),
    })
}
