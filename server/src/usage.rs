//! Reading the usage the engine meters (machine time per pool and UTC day, with its cost at
//! the pool's price): this month's figures for team pages, the cap, and charts.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::engine::store::month_start;
use crate::entities::usage;

/// A pool's month so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Month {
    pub machine_hours: f64,
    pub cost: f64,
    pub starts: i64,
}

/// This month's usage of every pool that used anything, as counted so far (running
/// machines are added every minute).
pub async fn this_month(db: &impl ConnectionTrait) -> Result<BTreeMap<String, Month>, DbErr> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out: BTreeMap<String, Month> = BTreeMap::new();
    for u in usage::Entity::find()
        .filter(usage::Column::Day.gte(month_start(now)))
        .all(db)
        .await?
    {
        let m = out.entry(u.pool).or_default();
        m.machine_hours += u.machine_ms as f64 / 3_600_000.0;
        m.cost += u.cost;
        m.starts += i64::from(u.starts);
    }
    Ok(out)
}
