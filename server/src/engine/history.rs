//! What the charts show, recorded by the engine: every [`FINE`] seconds each pool's machines by
//! state and the tickets it could serve (and the same for all pools together, pool [`ALL`]),
//! the start attempts and failures of the interval, and the p50 / p95 of the time from
//! takeTicket to a machine. Fine rows are kept [`FINE_KEEP_MS`]; each finished hour is rolled
//! up into one [`HOURLY`] row (means of the samples, sums of the counts, percentiles from the
//! tickets themselves) kept [`HOURLY_KEEP_MS`].
//!
//! Start counts are written in the pass that records the start's outcome (the same
//! transaction), so a crash loses none; samples and roll-ups are recomputed after a restart, and
//! writing one twice changes nothing.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use super::model::{Ms, PoolState, World};
use super::store;
use crate::entities::{pool_history as h, resources, tickets};

/// Seconds between two samples.
pub const FINE: i32 = 300;
/// Seconds of a rolled-up row.
pub const HOURLY: i32 = 3600;
/// How long fine rows are kept: the 24-hour charts, and an hour to roll up.
pub const FINE_KEEP_MS: Ms = 25 * 3_600_000;
/// How long hourly rows are kept: the 90-day charts.
pub const HOURLY_KEEP_MS: Ms = 91 * 86_400_000;
/// The pool name of the rows about all pools together.
pub const ALL: &str = "";

/// The start of the interval of `step` seconds that holds `ms`.
pub fn interval_of(ms: Ms, step: i32) -> Ms {
    let step = i64::from(step) * 1000;
    ms.div_euclid(step) * step
}

fn empty(pool: &str, step: i32, at_ms: Ms) -> h::ActiveModel {
    h::ActiveModel {
        pool: Set(pool.to_string()),
        step_secs: Set(step),
        at_ms: Set(at_ms),
        ready: Set(0.0),
        taken: Set(0.0),
        starting: Set(0.0),
        ending: Set(0.0),
        waiting: Set(0.0),
        samples: Set(0),
        starts: Set(0),
        start_failures: Set(0),
        assigned: Set(0),
        to_ready_p50_ms: Set(None),
        to_ready_p95_ms: Set(None),
    }
}

/// The columns a sample sets.
const GAUGES: [h::Column; 6] = [
    h::Column::Ready,
    h::Column::Taken,
    h::Column::Starting,
    h::Column::Ending,
    h::Column::Waiting,
    h::Column::Samples,
];

fn key() -> OnConflict {
    OnConflict::columns([h::Column::Pool, h::Column::StepSecs, h::Column::AtMs]).to_owned()
}

/// Counts one start attempt of `pool` at `now`, for the pool and for all pools; called in the
/// transaction of the pass that saw the attempt end.
pub async fn count_start(
    txn: &impl ConnectionTrait,
    pool: &str,
    now: Ms,
    success: bool,
) -> Result<(), DbErr> {
    let at = interval_of(now, FINE);
    let failed = i32::from(!success);
    for p in [pool, ALL] {
        let mut row = empty(p, FINE, at);
        row.starts = Set(1);
        row.start_failures = Set(failed);
        h::Entity::insert(row)
            .on_conflict(
                key()
                    .value(
                        h::Column::Starts,
                        Expr::col((h::Entity, h::Column::Starts)).add(1),
                    )
                    .value(
                        h::Column::StartFailures,
                        Expr::col((h::Entity, h::Column::StartFailures)).add(failed),
                    )
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// What the runner remembers between passes so that it samples once per interval (lost in a
/// crash: the interval is then sampled again, which changes nothing).
#[derive(Debug, Default)]
pub struct Recorder {
    sampled: Option<Ms>,
    rolled: Option<Ms>,
    /// The pools the last sample covered: a pool that appears is sampled at once, not at the
    /// next interval.
    pools: std::collections::BTreeSet<String>,
}

/// The figures of one sample.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Gauges {
    ready: f64,
    taken: f64,
    starting: f64,
    ending: f64,
    waiting: f64,
}

/// Takes this interval's sample if it has not been taken, closes the previous interval (its
/// time-to-ready percentiles), rolls up the previous hour and forgets what is too old. `world`
/// is the engine's state after the pass (for which tickets each pool could serve). Returns
/// whether it wrote anything.
pub async fn record(
    db: &DatabaseConnection,
    world: &World,
    now: Ms,
    recorder: &mut Recorder,
) -> Result<bool, DbErr> {
    let at = interval_of(now, FINE);
    let sampled_pools: std::collections::BTreeSet<String> = world
        .pools
        .iter()
        .filter(|(_, p)| p.config.state != PoolState::Retired)
        .map(|(name, _)| name.clone())
        .collect();
    if recorder.sampled == Some(at) && sampled_pools.is_subset(&recorder.pools) {
        return Ok(false);
    }
    let hour = interval_of(now, HOURLY);
    let txn = crate::db::begin_write(db).await?;

    let counts = store::pool_counts(&txn).await?;
    // Retired pools are sampled only while machines of theirs are still ending.
    let mut samples: BTreeMap<String, Gauges> = sampled_pools
        .iter()
        .map(|name| (name.clone(), Gauges::default()))
        .collect();
    let mut all = Gauges::default();
    for (pool, c) in &counts {
        let g = samples.entry(pool.clone()).or_default();
        g.ready = c.ready as f64;
        g.taken = c.taken as f64;
        g.starting = c.starting as f64;
        g.ending = (c.releasing + c.delete_requested + c.deleting) as f64;
        all.ready += g.ready;
        all.taken += g.taken;
        all.starting += g.starting;
        all.ending += g.ending;
    }
    for t in world.tickets.values().filter(|t| t.is_waiting()) {
        all.waiting += 1.0;
        for name in &sampled_pools {
            if world.pools[name].config.serves(&t.tags).is_some() {
                samples.entry(name.clone()).or_default().waiting += 1.0;
            }
        }
    }
    samples.insert(ALL.to_string(), all);
    for (pool, g) in &samples {
        let mut row = empty(pool, FINE, at);
        row.ready = Set(g.ready);
        row.taken = Set(g.taken);
        row.starting = Set(g.starting);
        row.ending = Set(g.ending);
        row.waiting = Set(g.waiting);
        row.samples = Set(1);
        h::Entity::insert(row)
            .on_conflict(key().update_columns(GAUGES).to_owned())
            .exec_without_returning(&txn)
            .await?;
    }

    let previous = at - i64::from(FINE) * 1000;
    save_to_ready(&txn, FINE, previous, at).await?;

    if recorder.rolled != Some(hour) {
        // Every finished hour since the last roll-up; after a restart, each of the last 24,
        // whose fine rows are all still kept (a roll-up written twice is the same row).
        let hour_ms = i64::from(HOURLY) * 1000;
        let oldest = hour - 24 * hour_ms;
        let first = recorder.rolled.map_or(oldest, |r| r.max(oldest));
        let mut h = interval_of(first, HOURLY);
        while h < hour {
            roll_up(&txn, h, h + hour_ms).await?;
            h += hour_ms;
        }
        h::Entity::delete_many()
            .filter(h::Column::StepSecs.eq(FINE))
            .filter(h::Column::AtMs.lt(now - FINE_KEEP_MS))
            .exec(&txn)
            .await?;
        h::Entity::delete_many()
            .filter(h::Column::StepSecs.eq(HOURLY))
            .filter(h::Column::AtMs.lt(now - HOURLY_KEEP_MS))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    recorder.sampled = Some(at);
    recorder.rolled = Some(hour);
    recorder.pools = sampled_pools;
    Ok(true)
}

/// The time from takeTicket to a machine of every ticket that got one in `[from, to)`, by
/// the machine's pool, each list sorted.
async fn to_ready(
    txn: &impl ConnectionTrait,
    from: Ms,
    to: Ms,
) -> Result<BTreeMap<String, Vec<i64>>, DbErr> {
    let assigned = tickets::Entity::find()
        .filter(tickets::Column::AssignedMs.gte(from))
        .filter(tickets::Column::AssignedMs.lt(to))
        .filter(tickets::Column::ResourceId.is_not_null())
        .all(txn)
        .await?;
    let ids: Vec<i32> = assigned.iter().filter_map(|t| t.resource_id).collect();
    let mut pools: BTreeMap<i32, String> = BTreeMap::new();
    for chunk in ids.chunks(500) {
        for r in resources::Entity::find()
            .filter(resources::Column::Id.is_in(chunk.to_vec()))
            .all(txn)
            .await?
        {
            pools.insert(r.id, r.pool);
        }
    }
    let mut by_pool: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in assigned {
        let (Some(assigned_ms), Some(pool)) =
            (t.assigned_ms, t.resource_id.and_then(|r| pools.get(&r)))
        else {
            continue;
        };
        let took = (assigned_ms - t.created_at.timestamp_millis()).max(0);
        by_pool.entry(pool.clone()).or_default().push(took);
        by_pool.entry(ALL.to_string()).or_default().push(took);
    }
    for v in by_pool.values_mut() {
        v.sort_unstable();
    }
    Ok(by_pool)
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Writes the time-to-ready figures of the interval `[from, to)` of `step` seconds.
async fn save_to_ready(
    txn: &impl ConnectionTrait,
    step: i32,
    from: Ms,
    to: Ms,
) -> Result<(), DbErr> {
    for (pool, took) in to_ready(txn, from, to).await? {
        let mut row = empty(&pool, step, from);
        row.assigned = Set(took.len() as i32);
        row.to_ready_p50_ms = Set(quantile(&took, 0.5));
        row.to_ready_p95_ms = Set(quantile(&took, 0.95));
        h::Entity::insert(row)
            .on_conflict(
                key()
                    .update_columns([
                        h::Column::Assigned,
                        h::Column::ToReadyP50Ms,
                        h::Column::ToReadyP95Ms,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// One hourly row per pool for `[from, to)`: the mean of its samples, the sum of its start
/// counts, and percentiles of the hour's tickets.
async fn roll_up(txn: &impl ConnectionTrait, from: Ms, to: Ms) -> Result<(), DbErr> {
    let fine = h::Entity::find()
        .filter(h::Column::StepSecs.eq(FINE))
        .filter(h::Column::AtMs.gte(from))
        .filter(h::Column::AtMs.lt(to))
        .all(txn)
        .await?;
    let mut by_pool: BTreeMap<String, Vec<h::Model>> = BTreeMap::new();
    for row in fine {
        by_pool.entry(row.pool.clone()).or_default().push(row);
    }
    for (pool, rows) in &by_pool {
        let sampled: Vec<&h::Model> = rows.iter().filter(|r| r.samples > 0).collect();
        let n = sampled.len().max(1) as f64;
        let mean = |f: fn(&h::Model) -> f64| sampled.iter().map(|r| f(r)).sum::<f64>() / n;
        let mut row = empty(pool, HOURLY, from);
        row.ready = Set(mean(|r| r.ready));
        row.taken = Set(mean(|r| r.taken));
        row.starting = Set(mean(|r| r.starting));
        row.ending = Set(mean(|r| r.ending));
        row.waiting = Set(mean(|r| r.waiting));
        row.samples = Set(sampled.len() as i32);
        row.starts = Set(rows.iter().map(|r| r.starts).sum());
        row.start_failures = Set(rows.iter().map(|r| r.start_failures).sum());
        h::Entity::insert(row)
            .on_conflict(
                key()
                    .update_columns(GAUGES)
                    .update_columns([h::Column::Starts, h::Column::StartFailures])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    save_to_ready(txn, HOURLY, from, to).await
}

/// A pool's history (or all pools', [`ALL`]) at `step` seconds from `since`, oldest first.
pub async fn series(
    db: &impl ConnectionTrait,
    pool: &str,
    step: i32,
    since: Ms,
) -> Result<Vec<h::Model>, DbErr> {
    h::Entity::find()
        .filter(h::Column::Pool.eq(pool))
        .filter(h::Column::StepSecs.eq(step))
        .filter(h::Column::AtMs.gte(since))
        .order_by_asc(h::Column::AtMs)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_quantiles() {
        assert_eq!(interval_of(299_999, FINE), 0);
        assert_eq!(interval_of(300_000, FINE), 300_000);
        assert_eq!(interval_of(7_199_999, HOURLY), 3_600_000);
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.95), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.95), Some(95));
        assert_eq!(quantile(&[1, 2, 3], 0.5), Some(2));
    }
}
