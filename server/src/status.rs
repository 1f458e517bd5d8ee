//! The public status: pools with their machine counts and the queue of waiting tickets.

use std::collections::BTreeMap;

use app::api::{PoolStatus, QueueGroup, StatusSnapshot};
use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::engine::model::{PoolState, Tag, score};
use crate::engine::store::{open_tickets, pool_counts};
use crate::entities::{pools, tickets};

/// Takes a snapshot of every pool that is not retired, and of the waiting tickets.
pub async fn snapshot(db: &impl ConnectionTrait) -> Result<StatusSnapshot, DbErr> {
    let now = Utc::now();
    let rows = pools::Entity::find()
        .filter(pools::Column::State.ne(PoolState::Retired.as_str()))
        .order_by_asc(pools::Column::Name)
        .all(db)
        .await?;
    let counts = pool_counts(db).await?;
    let month = crate::usage::this_month(db).await?;
    let mut offered: Vec<Vec<Tag>> = Vec::new();
    let mut pools_out = Vec::with_capacity(rows.len());
    for p in rows {
        let tags: Vec<Tag> = serde_json::from_str(&p.tags).unwrap_or_default();
        let on_demand: Vec<Tag> = serde_json::from_str(&p.tags_on_demand).unwrap_or_default();
        if matches!(
            PoolState::parse(&p.state),
            Some(PoolState::Active | PoolState::Paused)
        ) {
            offered.push(tags.iter().chain(on_demand.iter()).cloned().collect());
        }
        let c = counts.get(&p.name).cloned().unwrap_or_default();
        let cost = month.get(&p.name).map_or(0.0, |m| m.cost);
        pools_out.push(PoolStatus {
            cap: app::api::requests::cap_note(cost, p.monthly_cap),
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
        });
    }

    let waiting = tickets::Entity::find()
        .filter(open_tickets())
        .filter(tickets::Column::ResourceId.is_null())
        .all(db)
        .await?;
    let mut groups: BTreeMap<Vec<String>, (i64, f64)> = BTreeMap::new();
    for t in waiting {
        let tags: Vec<String> = serde_json::from_str(&t.tags).unwrap_or_default();
        let age = (now - t.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        let g = groups.entry(tags).or_insert((0, 0.0));
        g.0 += 1;
        g.1 = g.1.max(age);
    }
    let queue = groups
        .into_iter()
        .map(|(tags, (waiting, oldest))| QueueGroup {
            servable: offered.iter().any(|o| score(o.iter(), &tags).is_some()),
            tags,
            waiting,
            oldest_age_secs: oldest,
        })
        .collect();
    Ok(StatusSnapshot {
        pools: pools_out,
        queue,
        generated_at: now.timestamp(),
    })
}
