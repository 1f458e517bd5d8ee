//! The engine's database edge: loading the world a pass looks at, and persisting the pass's
//! actions in one transaction. Every update is guarded by the state it expects, so a
//! concurrent change (a closed ticket, an admin's delete) makes the whole pass roll back and
//! run again on fresh state instead of writing over it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use sea_orm::sea_query::{CaseStatement, Expr, Func, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter,
};

use super::core::{Action, ema, render_name};
use super::model::*;
use super::pools::from_model;
use crate::audit::{self, Actor};
use crate::entities::{named_counters, pools, resources, tickets, usage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database changed under the pass; run it again.
    #[error("the state changed during the pass ({0})")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Machines that still exist (not ENDED). A literal, not a bound parameter, so that
/// PostgreSQL's cached plans and SQLite's planner use the partial index `ix_resources_live`
/// instead of scanning every machine that ever existed.
pub fn live_resources() -> SimpleExpr {
    Expr::cust(r#""resources"."state" <> 'ENDED'"#)
}

/// OPEN tickets, through the partial index `ix_tickets_open` (see [`live_resources`]).
pub fn open_tickets() -> SimpleExpr {
    Expr::cust(r#""tickets"."state" = 'OPEN'"#)
}

/// What the runner needs beside the world to run hooks.
#[derive(Debug, Default)]
pub struct Loaded {
    pub world: World,
    /// `cmd_new` output of each machine.
    pub data: HashMap<i64, Vec<u8>>,
    /// Pools whose stored definition is broken, with why (they are left alone).
    pub broken: Vec<(String, String)>,
}

/// Reads pools, live machines and the tickets that matter.
pub async fn load(db: &DatabaseConnection) -> Result<Loaded, DbErr> {
    // Four independent reads, in parallel on separate connections: a pass's latency is the
    // engine's throughput. Their being separate snapshots is fine: only the engine assigns,
    // and everything it writes is guarded against what changed meanwhile.
    let now = Utc::now().timestamp_millis();
    let (pool_rows, counter_rows, resource_rows, open_rows, month_rows) = tokio::try_join!(
        pools::Entity::find().all(db),
        named_counters::Entity::find().all(db),
        resources::Entity::find().filter(live_resources()).all(db),
        tickets::Entity::find().filter(open_tickets()).all(db),
        usage::Entity::find()
            .filter(usage::Column::Day.gte(month_start(now)))
            .all(db),
    )?;
    // This month's cost per pool: what is counted, plus the running machines' time since
    // they were last counted.
    let mut month_cost: HashMap<String, f64> = HashMap::new();
    for u in month_rows {
        *month_cost.entry(u.pool).or_default() += u.cost;
    }
    let prices: HashMap<&str, f64> = pool_rows
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.price_per_hour?)))
        .collect();
    for r in &resource_rows {
        if let (Some(price), Some(since)) = (prices.get(r.pool.as_str()), r.accounted_ms) {
            let seconds = (now - since.max(month_start_ms(now))).max(0) as f64 / 1000.0;
            *month_cost.entry(r.pool.clone()).or_default() += seconds / 3600.0 * price;
        }
    }
    let mut loaded = Loaded::default();
    for m in pool_rows {
        match from_model(&m) {
            Ok(config) => {
                let runtime = PoolRuntime {
                    last_start: m.last_start_ms,
                    last_list: m.last_list_ms,
                    month_cost: month_cost.get(&m.name).copied().unwrap_or(0.0),
                };
                loaded
                    .world
                    .pools
                    .insert(m.name.clone(), Pool { config, runtime });
            }
            Err(errors) => {
                let why = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                loaded.broken.push((m.name.clone(), why));
            }
        }
    }

    let mut counters: HashMap<i64, Vec<(String, u32)>> = HashMap::new();
    for c in counter_rows {
        counters
            .entry(i64::from(c.resource_id))
            .or_default()
            .push((c.counter_name, c.value.max(0) as u32));
    }

    let mut referenced = BTreeSet::new();
    for m in resource_rows {
        let Some(state) = RState::parse(&m.state) else {
            tracing::error!(resource = m.id, state = %m.state, "machine with an unknown state is left alone");
            continue;
        };
        let id = i64::from(m.id);
        if let Some(t) = m.ticket_id {
            referenced.insert(i64::from(t));
        }
        let tags: Vec<Tag> = serde_json::from_str(&m.tags).unwrap_or_default();
        loaded.data.insert(id, m.data.unwrap_or_default());
        loaded.world.resources.insert(
            id,
            Resource {
                id,
                pool: m.pool,
                name: m.name.unwrap_or_default(),
                state,
                tags,
                ticket: m.ticket_id.map(i64::from),
                sandbox: m.sandbox,
                sandboxed_since: m.sandboxed_since_ms,
                released_at: m.released_at_ms,
                releases: m.releases_counter.max(0) as u32,
                check_failed: m.check_failed_count.max(0) as u32,
                check_last: m.check_last_ms,
                up_at: m.up_ms,
                id_in_pool: m.id_in_pool.max(0) as u32,
                counters: counters.remove(&id).unwrap_or_default(),
            },
        );
    }

    for m in open_rows {
        referenced.remove(&i64::from(m.id));
        insert_ticket(&mut loaded.world, m);
    }
    if !referenced.is_empty() {
        let ids: Vec<i32> = referenced.iter().map(|&i| i as i32).collect();
        for chunk in ids.chunks(500) {
            for m in tickets::Entity::find()
                .filter(tickets::Column::Id.is_in(chunk.to_vec()))
                .all(db)
                .await?
            {
                insert_ticket(&mut loaded.world, m);
            }
        }
    }
    Ok(loaded)
}

fn insert_ticket(world: &mut World, m: tickets::Model) {
    let Some(state) = TState::parse(&m.state) else {
        return;
    };
    let tags: Vec<String> = serde_json::from_str(&m.tags).unwrap_or_default();
    let id = i64::from(m.id);
    world.tickets.insert(
        id,
        Ticket {
            id,
            state,
            tags,
            sandbox: m.sandbox,
            resource: m.resource_id.map(i64::from),
        },
    );
}

/// A machine inserted by a `Start` action.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: i64,
    pub name: String,
    pub pool: String,
    pub id_in_pool: u32,
    pub counters: Vec<(String, u32)>,
}

/// Writes the actions of one pass in one transaction. Returns the machines it inserted, in
/// the order of the `Start` actions.
pub async fn persist(
    db: &DatabaseConnection,
    actions: &[Action],
    now: Ms,
) -> Result<Vec<Started>, StoreError> {
    if !actions.iter().any(writes) {
        return Ok(Vec::new());
    }
    let txn = crate::db::begin_write(db).await?;
    let mut started = Vec::new();
    let mut rest = actions;
    while let Some(first) = rest.first() {
        // A pass emits its releases together and its assignments together; each run is
        // written with one statement per table, so a busy pass costs a few round trips, not
        // a few per ticket.
        let run = rest
            .iter()
            .take_while(|a| same_batch(first, a))
            .count()
            .max(1);
        let (batch, tail) = rest.split_at(run);
        match first {
            Action::Release { .. } => release_batch(&txn, batch, now).await?,
            Action::Assign { .. } => assign_batch(&txn, batch, now).await?,
            _ => apply(&txn, first, now, &mut started).await?,
        }
        rest = tail;
    }
    txn.commit().await?;
    Ok(started)
}

fn same_batch(a: &Action, b: &Action) -> bool {
    matches!(
        (a, b),
        (Action::Release { .. }, Action::Release { .. })
            | (Action::Assign { .. }, Action::Assign { .. })
    )
}

/// How many rows one batched statement touches at most (SQLite limits bound parameters).
const BATCH: usize = 400;

/// Releases machines whose tickets were closed: UP without a ticket, or RELEASING when the
/// pool has `cmd_release`.
async fn release_batch(
    txn: &DatabaseTransaction,
    batch: &[Action],
    now: Ms,
) -> Result<(), StoreError> {
    use resources::Column as R;
    for chunk in batch.chunks(BATCH) {
        let mut ids = Vec::new();
        let mut releasing = Vec::new();
        for a in chunk {
            if let Action::Release { resource, run_hook } = a {
                ids.push(id32(*resource));
                if *run_hook {
                    releasing.push(id32(*resource));
                }
            }
        }
        let state = CaseStatement::new()
            .case(
                R::Id.is_in(releasing),
                Expr::value(RState::Releasing.as_str()),
            )
            .finally(Expr::value(RState::Up.as_str()));
        let r = resources::Entity::update_many()
            .col_expr(R::State, state.into())
            .col_expr(R::TicketId, Expr::value(Option::<i32>::None))
            .col_expr(R::ReleasedAtMs, Expr::value(now))
            .col_expr(R::ReleasesCounter, Expr::col(R::ReleasesCounter).add(1))
            .col_expr(R::UpdatedAt, Expr::value(Utc::now()))
            .filter(R::Id.is_in(ids.clone()))
            .filter(R::State.eq(RState::Up.as_str()))
            .filter(R::TicketId.is_not_null())
            .exec(txn)
            .await?;
        guard_all(r.rows_affected, ids.len(), || {
            format!("some of machines {ids:?} were no longer taken")
        })?;
    }
    Ok(())
}

/// Gives machines to tickets: a machine keeps its sandbox if it has one (reuse) or takes the
/// ticket's; the ticket records its machine and sandbox.
async fn assign_batch(
    txn: &DatabaseTransaction,
    batch: &[Action],
    now: Ms,
) -> Result<(), StoreError> {
    use resources::Column as R;
    use tickets::Column as T;
    for chunk in batch.chunks(BATCH) {
        let mut machine_ticket = CaseStatement::new();
        let mut machine_sandbox = CaseStatement::new();
        let mut ticket_machine = CaseStatement::new();
        let mut ticket_sandbox = CaseStatement::new();
        let (mut machines, mut tickets) = (Vec::new(), Vec::new());
        for a in chunk {
            let Action::Assign {
                ticket,
                resource,
                sandbox,
                ..
            } = a
            else {
                continue;
            };
            let (t, r) = (id32(*ticket), id32(*resource));
            machine_ticket = machine_ticket.case(R::Id.eq(r), Expr::value(t));
            machine_sandbox = machine_sandbox.case(R::Id.eq(r), Expr::value(sandbox.clone()));
            ticket_machine = ticket_machine.case(T::Id.eq(t), Expr::value(r));
            ticket_sandbox = ticket_sandbox.case(T::Id.eq(t), Expr::value(sandbox.clone()));
            machines.push(r);
            tickets.push(t);
        }
        let r = resources::Entity::update_many()
            .col_expr(R::TicketId, machine_ticket.into())
            .col_expr(
                R::Sandbox,
                Func::coalesce([Expr::col(R::Sandbox).into(), machine_sandbox.into()]).into(),
            )
            .col_expr(
                R::SandboxedSinceMs,
                Func::coalesce([Expr::col(R::SandboxedSinceMs).into(), Expr::value(now)]).into(),
            )
            .col_expr(R::UpdatedAt, Expr::value(Utc::now()))
            .filter(R::Id.is_in(machines.clone()))
            .filter(R::State.eq(RState::Up.as_str()))
            .filter(R::TicketId.is_null())
            .exec(txn)
            .await?;
        guard_all(r.rows_affected, machines.len(), || {
            format!("some of machines {machines:?} were no longer ready")
        })?;
        let t = tickets::Entity::update_many()
            .col_expr(T::ResourceId, ticket_machine.into())
            .col_expr(T::Sandbox, ticket_sandbox.into())
            .col_expr(T::AssignedMs, Expr::value(now))
            .filter(T::Id.is_in(tickets.clone()))
            .filter(T::State.eq(TState::Open.as_str()))
            .filter(T::ResourceId.is_null())
            .exec(txn)
            .await?;
        guard_all(t.rows_affected, tickets.len(), || {
            format!("some of tickets {tickets:?} were no longer waiting")
        })?;
    }
    Ok(())
}

fn writes(action: &Action) -> bool {
    !matches!(action, Action::CancelHook { .. } | Action::Livecheck { .. })
}

/// A guarded update must touch exactly one row; otherwise the state changed under the pass.
fn guard(rows: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    guard_all(rows, 1, what)
}

/// A guarded batch update must touch every row it names.
fn guard_all(rows: u64, expected: usize, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows == expected as u64 {
        Ok(())
    } else {
        Err(StoreError::Conflict(what()))
    }
}

fn id32(id: i64) -> i32 {
    i32::try_from(id).expect("ids fit the INTEGER columns they come from")
}

async fn apply(
    txn: &DatabaseTransaction,
    action: &Action,
    now: Ms,
    started: &mut Vec<Started>,
) -> Result<(), StoreError> {
    use resources::Column as R;
    let stamp = Utc::now();
    let res = || resources::Entity::update_many().col_expr(R::UpdatedAt, Expr::value(stamp));
    match action {
        Action::MarkUp {
            resource,
            data,
            tags,
        } => {
            let r = res()
                .col_expr(R::State, Expr::value(RState::Up.as_str()))
                .col_expr(R::Data, Expr::value(data.clone()))
                .col_expr(
                    R::Tags,
                    Expr::value(serde_json::to_string(tags).expect("tags serialize")),
                )
                .col_expr(R::UpMs, Expr::value(now))
                .col_expr(R::CheckLastMs, Expr::value(now))
                .col_expr(R::CheckFailedCount, Expr::value(0))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.eq(RState::Starting.as_str()))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} is no longer STARTING")
            })?;
        }
        Action::MarkEnded { resource } => {
            // Its last seconds, in the transaction that ends it: counted once, never lost.
            if let Some(m) = resources::Entity::find_by_id(id32(*resource))
                .one(txn)
                .await?
            {
                account(txn, &m.pool, m.accounted_ms, now).await?;
                res()
                    .col_expr(R::AccountedMs, Expr::value(now))
                    .filter(R::Id.eq(id32(*resource)))
                    .exec(txn)
                    .await?;
            }
            let r = res()
                .col_expr(R::State, Expr::value(RState::Ended.as_str()))
                .col_expr(R::EndedMs, Expr::value(now))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.is_in([RState::Starting.as_str(), RState::Deleting.as_str()]))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} changed before it ended")
            })?;
            named_counters::Entity::delete_many()
                .filter(named_counters::Column::ResourceId.eq(id32(*resource)))
                .exec(txn)
                .await?;
        }
        Action::StartStats {
            pool,
            success,
            took_ms,
        } => {
            super::history::count_start(txn, pool, now, *success).await?;
            if let Some(m) = pools::Entity::find_by_id(pool.clone()).one(txn).await? {
                let mut am: pools::ActiveModel = m.clone().into();
                am.start_success_rate = Set(Some(ema(
                    m.start_success_rate,
                    if *success { 1.0 } else { 0.0 },
                )));
                am.last_attempt_to_start_ms = Set(Some(now));
                if *success {
                    am.start_time_avg = Set(Some(ema(m.start_time_avg, *took_ms as f64 / 1000.0)));
                    am.last_successful_start_ms = Set(Some(now));
                }
                pools::Entity::update(am).exec(txn).await?;
            }
        }
        Action::Checked { resource, ok } => {
            let failed = if *ok {
                Expr::value(0)
            } else {
                Expr::col(R::CheckFailedCount).add(1)
            };
            res()
                .col_expr(R::CheckLastMs, Expr::value(now))
                .col_expr(R::CheckFailedCount, failed)
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.eq(RState::Up.as_str()))
                .exec(txn)
                .await?;
        }
        Action::ReleaseDone { resource } => {
            let r = res()
                .col_expr(R::State, Expr::value(RState::Up.as_str()))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.eq(RState::Releasing.as_str()))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} is no longer RELEASING")
            })?;
        }
        Action::RequestDelete {
            resource,
            reason,
            fail_ticket,
        } => {
            let r = res()
                .col_expr(R::State, Expr::value(RState::DeleteRequest.as_str()))
                .col_expr(R::DeleteReason, Expr::value(reason.as_str()))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.is_not_in([
                    RState::DeleteRequest.as_str(),
                    RState::Deleting.as_str(),
                    RState::Ended.as_str(),
                ]))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} was already being deleted")
            })?;
            audit::record(
                txn,
                &Actor::System,
                "resource.delete",
                "resource",
                resource,
                serde_json::json!({ "reason": reason.as_str(), "failed_ticket": fail_ticket }),
            )
            .await?;
            if let Some(ticket) = fail_ticket {
                tickets::Entity::update_many()
                    .col_expr(tickets::Column::State, Expr::value(TState::Failed.as_str()))
                    .filter(tickets::Column::Id.eq(id32(*ticket)))
                    .filter(tickets::Column::State.eq(TState::Open.as_str()))
                    .exec(txn)
                    .await?;
            }
        }
        Action::RetryDelete { resource } => {
            let r = res()
                .col_expr(R::State, Expr::value(RState::DeleteRequest.as_str()))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.eq(RState::Deleting.as_str()))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} is no longer DELETING")
            })?;
        }
        Action::Delete { resource } => {
            let r = res()
                .col_expr(R::State, Expr::value(RState::Deleting.as_str()))
                .filter(R::Id.eq(id32(*resource)))
                .filter(R::State.eq(RState::DeleteRequest.as_str()))
                .exec(txn)
                .await?;
            guard(r.rows_affected, || {
                format!("machine {resource} is no longer DELETE_REQUEST")
            })?;
        }
        Action::Start {
            pool,
            id_in_pool,
            counters,
        } => {
            let config = pools::Entity::find_by_id(pool.clone())
                .one(txn)
                .await?
                .ok_or_else(|| StoreError::Conflict(format!("pool {pool} disappeared")))?;
            let inserted = resources::Entity::insert(resources::ActiveModel {
                pool: Set(pool.clone()),
                name: Set(None),
                state: Set(RState::Starting.as_str().into()),
                data: Set(None),
                tags: Set("[]".into()),
                id_in_pool: Set(*id_in_pool as i32),
                ticket_id: Set(None),
                sandbox: Set(None),
                sandboxed_since_ms: Set(None),
                released_at_ms: Set(None),
                releases_counter: Set(0),
                check_failed_count: Set(0),
                check_last_ms: Set(None),
                up_ms: Set(None),
                ended_ms: Set(None),
                delete_reason: Set(None),
                created_at: Set(stamp),
                updated_at: Set(stamp),
                // The cloud bills from the start, whether it succeeds or not.
                accounted_ms: Set(Some(now)),
                ..Default::default()
            })
            .exec(txn)
            .await
            .map_err(|e| StoreError::Conflict(format!("starting a machine in {pool}: {e}")))?;
            add_usage(txn, pool, &day_of(now), 0, 0.0, 1).await?;
            let id = i64::from(inserted.last_insert_id);
            let name = render_name(&config.name_pattern, pool, id, *id_in_pool, now);
            resources::Entity::update_many()
                .col_expr(R::Name, Expr::value(name.clone()))
                .filter(R::Id.eq(inserted.last_insert_id))
                .exec(txn)
                .await?;
            for (counter, value) in counters {
                named_counters::Entity::insert(named_counters::ActiveModel {
                    resource_id: Set(inserted.last_insert_id),
                    counter_name: Set(counter.clone()),
                    value: Set(*value as i32),
                    created_at: Set(stamp),
                })
                .exec(txn)
                .await
                .map_err(|e| {
                    StoreError::Conflict(format!("named counter {counter}={value}: {e}"))
                })?;
            }
            pools::Entity::update_many()
                .col_expr(pools::Column::LastStartMs, Expr::value(now))
                .filter(pools::Column::Name.eq(pool.clone()))
                .exec(txn)
                .await?;
            audit::record(
                txn,
                &Actor::System,
                "resource.start",
                "resource",
                id,
                serde_json::json!({ "pool": pool, "name": name }),
            )
            .await?;
            started.push(Started {
                id,
                name,
                pool: pool.clone(),
                id_in_pool: *id_in_pool,
                counters: counters.clone(),
            });
        }
        Action::List { pool } => {
            pools::Entity::update_many()
                .col_expr(pools::Column::LastListMs, Expr::value(now))
                .filter(pools::Column::Name.eq(pool.clone()))
                .exec(txn)
                .await?;
        }
        Action::DeleteUnknown { pool, name } => {
            audit::record(
                txn,
                &Actor::System,
                "resource.delete_unknown",
                "resource",
                name,
                serde_json::json!({ "pool": pool, "reason": "listed by cmd_list twice, unknown to the engine" }),
            )
            .await?;
        }
        // Batched by `persist`, or nothing to write.
        Action::Release { .. }
        | Action::Assign { .. }
        | Action::CancelHook { .. }
        | Action::Livecheck { .. } => {}
    }
    Ok(())
}

/// resalloc's restart rule: hooks died with the old process, so machines caught in STARTING,
/// DELETING or RELEASING are deleted (their `cmd_delete` is idempotent). Returns how many.
pub async fn recover_after_restart(db: &DatabaseConnection) -> Result<u64, DbErr> {
    use resources::Column as R;
    let r = resources::Entity::update_many()
        .col_expr(R::State, Expr::value(RState::DeleteRequest.as_str()))
        .col_expr(R::DeleteReason, Expr::value(DeleteReason::Restart.as_str()))
        .col_expr(R::UpdatedAt, Expr::value(Utc::now()))
        .filter(R::State.is_in([
            RState::Starting.as_str(),
            RState::Deleting.as_str(),
            RState::Releasing.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Per-pool machine counts in the columns of resalloc-webui's `/pools`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub up: i64,
    pub ready: i64,
    pub taken: i64,
    pub starting: i64,
    pub delete_requested: i64,
    pub deleting: i64,
    pub releasing: i64,
}

/// Counts the live machines of every pool.
pub async fn pool_counts(db: &impl ConnectionTrait) -> Result<BTreeMap<String, PoolCounts>, DbErr> {
    let rows = resources::Entity::find()
        .filter(live_resources())
        .all(db)
        .await?;
    Ok(counts_of(&rows))
}

/// [`pool_counts`] of machines already read (live ones).
pub fn counts_of(rows: &[resources::Model]) -> BTreeMap<String, PoolCounts> {
    let mut counts: BTreeMap<String, PoolCounts> = BTreeMap::new();
    for r in rows {
        let c = counts.entry(r.pool.clone()).or_default();
        match RState::parse(&r.state) {
            Some(RState::Up) => {
                c.up += 1;
                if r.ticket_id.is_some() {
                    c.taken += 1;
                } else if r.check_failed_count == 0 {
                    c.ready += 1;
                }
            }
            Some(RState::Starting) => c.starting += 1,
            Some(RState::DeleteRequest) => c.delete_requested += 1,
            Some(RState::Deleting) => c.deleting += 1,
            Some(RState::Releasing) => c.releasing += 1,
            _ => {}
        }
    }
    counts
}

/// `YYYY-MM-DD` (UTC) of an instant.
pub fn day_of(ms: Ms) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The first instant of the UTC month of `ms`.
pub fn month_start_ms(ms: Ms) -> Ms {
    use chrono::{Datelike, TimeZone};
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |m| m.timestamp_millis())
}

/// `YYYY-MM-01` of the UTC month of `ms`.
pub fn month_start(ms: Ms) -> String {
    day_of(month_start_ms(ms))
}

/// Splits `[from, to)` by UTC day: (day, milliseconds in it).
pub fn split_by_day(from: Ms, to: Ms) -> Vec<(String, Ms)> {
    const DAY: Ms = 86_400_000;
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let next = ((at.div_euclid(DAY)) + 1) * DAY;
        let end = next.min(to);
        out.push((day_of(at), end - at));
        at = end;
    }
    out
}

/// Adds to a pool's usage of a day.
async fn add_usage(
    txn: &impl ConnectionTrait,
    pool: &str,
    day: &str,
    ms: i64,
    cost: f64,
    starts: i32,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO \"usage\" (pool, day, machine_ms, cost, starts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (pool, day) DO UPDATE SET machine_ms = \"usage\".machine_ms + excluded.machine_ms, \
             cost = \"usage\".cost + excluded.cost, starts = \"usage\".starts + excluded.starts"
        }
        _ => {
            "INSERT INTO \"usage\" (pool, day, machine_ms, cost, starts) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (pool, day) DO UPDATE SET machine_ms = \"usage\".machine_ms + excluded.machine_ms, \
             cost = \"usage\".cost + excluded.cost, starts = \"usage\".starts + excluded.starts"
        }
    };
    txn.execute(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [
            pool.into(),
            day.into(),
            ms.into(),
            cost.into(),
            starts.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Counts a machine's time from `since` to `now` in its pool's usage, at the pool's price.
async fn account(
    txn: &impl ConnectionTrait,
    pool: &str,
    since: Option<Ms>,
    now: Ms,
) -> Result<(), DbErr> {
    let Some(since) = since.filter(|s| *s < now) else {
        return Ok(());
    };
    let price = pools::Entity::find_by_id(pool.to_string())
        .one(txn)
        .await?
        .and_then(|p| p.price_per_hour)
        .unwrap_or(0.0);
    for (day, ms) in split_by_day(since, now) {
        add_usage(txn, pool, &day, ms, ms as f64 / 3_600_000.0 * price, 0).await?;
    }
    Ok(())
}

/// Counts every live machine's time up to `now`, in one transaction with the marks of how far
/// each is counted, so a crash at any point counts no second twice and loses none.
pub async fn account_usage(db: &DatabaseConnection, now: Ms) -> Result<usize, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let live = resources::Entity::find()
        .filter(live_resources())
        .all(&txn)
        .await?;
    let prices: HashMap<String, f64> = pools::Entity::find()
        .all(&txn)
        .await?
        .into_iter()
        .map(|p| (p.name, p.price_per_hour.unwrap_or(0.0)))
        .collect();
    let mut by_day: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    let mut counted = Vec::new();
    for r in &live {
        let Some(since) = r.accounted_ms.filter(|s| *s < now) else {
            continue;
        };
        let price = prices.get(&r.pool).copied().unwrap_or(0.0);
        for (day, ms) in split_by_day(since, now) {
            let e = by_day.entry((r.pool.clone(), day)).or_default();
            e.0 += ms;
            e.1 += ms as f64 / 3_600_000.0 * price;
        }
        counted.push(r.id);
    }
    for ((pool, day), (ms, cost)) in &by_day {
        add_usage(&txn, pool, day, *ms, *cost, 0).await?;
    }
    for chunk in counted.chunks(500) {
        resources::Entity::update_many()
            .col_expr(resources::Column::AccountedMs, Expr::value(now))
            .filter(resources::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(counted.len())
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn time_is_split_by_utc_day_and_months_start_on_the_first() {
        let day = 86_400_000;
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T23:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            split_by_day(t, t + 2 * 3_600_000 + 5),
            vec![
                ("2026-11-30".to_string(), 3_600_000),
                ("2026-12-01".to_string(), 3_600_005)
            ]
        );
        assert_eq!(split_by_day(t, t), vec![]);
        assert_eq!(split_by_day(t, t + 3 * day).len(), 4);
        assert_eq!(month_start(t), "2026-11-01");
        assert_eq!(month_start(t + 3_600_000), "2026-12-01");
        let ms: i64 = split_by_day(t - 17, t + 3 * day + 9)
            .iter()
            .map(|(_, m)| m)
            .sum();
        assert_eq!(ms, 3 * day + 26, "nothing lost between the pieces");
    }
}
