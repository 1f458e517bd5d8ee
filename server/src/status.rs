//! The public status: pools with their machine counts and the queue of waiting tickets.

use app::api::{PoolStatus, StatusSnapshot};
use chrono::Utc;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::engine::model::{PoolState, Tag};
use crate::engine::store::{PoolCounts, pool_counts};
use crate::entities::pools;

/// One pool's line: its definition, machine counts and this month's cost against its cap.
pub fn pool_status(p: pools::Model, c: &PoolCounts, month_cost: f64) -> PoolStatus {
    let tags: Vec<Tag> = serde_json::from_str(&p.tags).unwrap_or_default();
    let on_demand: Vec<Tag> = serde_json::from_str(&p.tags_on_demand).unwrap_or_default();
    PoolStatus {
        cap: app::api::requests::cap_note(month_cost, p.monthly_cap),
        name: p.name,
        description: p.description,
        state: p.state,
        tags: tags.into_iter().map(|t| t.name).collect(),
        tags_on_demand: on_demand.into_iter().map(|t| t.name).collect(),
        max: i64::from(p.max),
        up: c.up,
        ready: c.ready,
        taken: c.taken,
        starting: c.starting,
        delete_requested: c.delete_requested,
        deleting: c.deleting,
        releasing: c.releasing,
        start_success_rate: p.start_success_rate,
        start_time_avg: p.start_time_avg,
    }
}

/// Takes a snapshot of every pool that is not retired, and of the waiting tickets.
pub async fn snapshot(
    db: &DatabaseConnection,
    waiting: &crate::waiting::WaitingCache,
) -> Result<StatusSnapshot, DbErr> {
    let now = Utc::now();
    let rows = pools::Entity::find()
        .filter(pools::Column::State.ne(PoolState::Retired.as_str()))
        .order_by_asc(pools::Column::Name)
        .all(db)
        .await?;
    let counts = pool_counts(db).await?;
    let month = crate::usage::this_month(db).await?;
    let pools_out = rows
        .into_iter()
        .map(|p| {
            let c = counts.get(&p.name).cloned().unwrap_or_default();
            let cost = month.get(&p.name).map_or(0.0, |m| m.cost);
            pool_status(p, &c, cost)
        })
        .collect();

    let queue = crate::waiting::queue(&*waiting.get(db).await?);
    Ok(StatusSnapshot {
        pools: pools_out,
        queue,
        generated_at: now.timestamp(),
    })
}
