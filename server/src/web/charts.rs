//! The charts' server side: the [`ChartsBackend`] port. Pool charts are public, like the
//! status page; a team's usage is for its members and admins.

use app::api::charts::{Chart, ChartRange, ChartsBackend};
use app::error::AppError;
use sea_orm::EntityTrait;

use super::backend::request_user;
use crate::accounts::{self, CurrentUser};
use crate::auth::current::{require, require_member};
use crate::entities::pools;
use crate::state::AppState;

pub struct ServerCharts {
    pub state: AppState,
}

fn internal(context: &'static str) -> impl FnOnce(sea_orm::DbErr) -> AppError {
    move |e| {
        tracing::error!(error = %e, context, "charts: database error");
        AppError::Internal
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The charts of one pool (or all, `pool == ""`), for anyone.
pub async fn pool_charts(
    state: &AppState,
    pool: &str,
    range: ChartRange,
) -> Result<Vec<Chart>, AppError> {
    if !pool.is_empty()
        && pools::Entity::find_by_id(pool.to_string())
            .one(&state.db)
            .await
            .map_err(internal("pool"))?
            .is_none()
    {
        return Err(AppError::NotFound(format!("pool {pool}")));
    }
    crate::charts::pool_charts(&state.db, pool, range, now_ms())
        .await
        .map_err(internal("history"))
}

/// A team's usage charts, for `user` if they may see the team.
pub async fn team_charts(
    state: &AppState,
    user: Option<CurrentUser>,
    team: &str,
) -> Result<Vec<Chart>, AppError> {
    let user = require(user)?;
    require_member(&user, team)?;
    let found = accounts::team(&state.db, team)
        .await
        .map_err(internal("team"))?
        .ok_or_else(|| AppError::NotFound(format!("team {team}")))?;
    crate::charts::team_charts(&state.db, found.id, now_ms())
        .await
        .map_err(internal("usage"))
}

#[async_trait::async_trait]
impl ChartsBackend for ServerCharts {
    async fn pool_charts(&self, pool: String, range: ChartRange) -> Result<Vec<Chart>, AppError> {
        pool_charts(&self.state, &pool, range).await
    }

    async fn team_charts(&self, team: String) -> Result<Vec<Chart>, AppError> {
        let user = request_user(&self.state).await?;
        team_charts(&self.state, user, &team).await
    }
}
