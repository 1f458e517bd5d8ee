//! The engine's thin shell around the pure core: load the world, run a pass, persist its
//! actions in one transaction, then start the hooks they ask for and feed their results into
//! the next pass. Passes run when something happens (a ticket, a closed ticket, a finished
//! hook) and at the latest when the core says something falls due, or after the configured
//! period.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::core::{self, Action};
use super::hooks::{self, HookRunResult, HookSpec};
use super::model::*;
use super::store::{self, Loaded, StoreError};
use super::{Engine, EngineError, history};

/// Passes in a row that may hit a conflict before the runner backs off a little.
const CONFLICT_BURST: u32 = 3;
/// How long a hook that could not be started waits before its machine is tried again.
const NOT_STARTED_BACKOFF: Duration = Duration::from_secs(5);
/// How often running machines' time is added to the usage (a machine that ends is counted
/// at once, in the pass that ends it).
const USAGE_EVERY: Duration = Duration::from_secs(60);

/// In-memory state the runner carries between passes (all of it may be lost in a crash).
struct Carry {
    busy: BTreeMap<i64, HookKind>,
    listing: BTreeSet<String>,
    unknown: BTreeMap<(String, String), Ms>,
    outcomes: Vec<HookOutcome>,
    cancels: HashMap<i64, CancellationToken>,
    reported_broken: HashSet<(String, String)>,
    /// (pool, month, level) of budget warnings already logged.
    reported_caps: HashSet<(String, String, u8)>,
    /// Pool-wide hooks running, by (pool, unknown machine's name or "" for the listing),
    /// stopped with the runner.
    pool_hooks: HashMap<(String, String), CancellationToken>,
}

/// Runs passes until `shutdown`. Fails only when hooks could never run (their log directory
/// cannot be made); database trouble is retried.
pub(super) async fn run(engine: Engine, shutdown: CancellationToken) -> Result<(), EngineError> {
    let db = engine.db().clone();
    let hook_logs = engine.settings().log_dir().join("hooks");
    if let Err(source) = tokio::fs::create_dir_all(&hook_logs).await {
        return Err(EngineError::LogDir {
            path: hook_logs,
            source,
        });
    }
    let orphans = hooks::kill_orphans(engine.settings().log_dir());
    if orphans > 0 {
        tracing::warn!(
            processes = orphans,
            "killed hooks left running by a previous server process"
        );
    }
    // Their credential files too (after the kill, so no hook still reads them).
    let swept = hooks::sweep_secrets(&engine.settings().hooks.secrets_dir);
    if swept > 0 {
        tracing::warn!(
            hooks = swept,
            "removed credential files left by hooks of a previous server process"
        );
    }
    loop {
        match store::recover_after_restart(&db).await {
            Ok(0) => break,
            Ok(n) => {
                tracing::warn!(
                    machines = n,
                    "machines caught mid-hook by a restart are being deleted"
                );
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the engine state; retrying in 2 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<HookOutcome>();
    let livechecks = Arc::new(Semaphore::new(engine.settings().livecheck_concurrency));
    let mut carry = Carry {
        busy: BTreeMap::new(),
        listing: BTreeSet::new(),
        unknown: BTreeMap::new(),
        outcomes: Vec::new(),
        cancels: HashMap::new(),
        reported_broken: HashSet::new(),
        reported_caps: HashSet::new(),
        pool_hooks: HashMap::new(),
    };
    let mut accounted_at: Option<Instant> = None;
    let mut recorder = history::Recorder::default();
    let mut conflicts_in_a_row = 0u32;
    let period = engine.settings().period;

    while !shutdown.is_cancelled() {
        while let Ok(o) = rx.try_recv() {
            carry.outcomes.push(o);
        }
        let started_at = Instant::now();
        let loaded = match store::load(&db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the engine state; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        report_broken(&loaded, &mut carry);
        report_caps(&loaded, &mut carry);
        let Loaded {
            mut world,
            mut data,
            ..
        } = loaded;
        world.busy = carry.busy.clone();
        world.listing = carry.listing.clone();
        world.unknown = carry.unknown.clone();
        world.outcomes = carry.outcomes.clone();

        let now = now_ms();
        let loaded_at = Instant::now();
        let output = core::pass(&mut world, now, &mut |ticket| {
            format!("unsandboxed-{ticket}-{}", uuid::Uuid::new_v4())
        });
        let decided_at = Instant::now();
        let persisted = store::persist(&db, &output.actions, now).await;
        tracing::trace!(
            load_us = (loaded_at - started_at).as_micros() as u64,
            decide_us = (decided_at - loaded_at).as_micros() as u64,
            persist_us = decided_at.elapsed().as_micros() as u64,
            actions = output.actions.len(),
            "engine pass"
        );
        match persisted {
            Ok(started) => {
                // Machines that came up in this pass carry their new data in the action.
                for a in &output.actions {
                    if let Action::MarkUp {
                        resource,
                        data: fresh,
                        ..
                    } = a
                    {
                        data.insert(*resource, fresh.clone());
                    }
                }
                conflicts_in_a_row = 0;
                for o in carry.outcomes.drain(..) {
                    if let Some(resource) = o.resource() {
                        carry.cancels.remove(&resource);
                    }
                    match o {
                        HookOutcome::Listed { pool, .. } => {
                            carry.pool_hooks.remove(&(pool, String::new()));
                        }
                        HookOutcome::UnknownDeleted { pool, name } => {
                            carry.pool_hooks.remove(&(pool, name));
                        }
                        _ => {}
                    }
                }
                carry.busy = std::mem::take(&mut world.busy);
                carry.listing = std::mem::take(&mut world.listing);
                carry.unknown = std::mem::take(&mut world.unknown);
                engine
                    .waiters()
                    .assigned(output.actions.iter().filter_map(|a| match a {
                        Action::Assign {
                            ticket, resource, ..
                        } => Some((*ticket, data.get(resource).cloned().unwrap_or_default())),
                        _ => None,
                    }));
                let assigned: Vec<i64> = output.assigned_tickets().collect();
                engine.announce_assigned(&assigned);
                observe_ready(&engine, assigned, now);
                launch_hooks(
                    &engine,
                    &world,
                    &data,
                    &output.actions,
                    started,
                    &mut carry,
                    &tx,
                    &livechecks,
                );
                engine.record_pass(started_at.elapsed(), output.assigned_tickets().count());
                if accounted_at.is_none_or(|t| t.elapsed() >= USAGE_EVERY) {
                    match store::account_usage(&db, now_ms()).await {
                        Ok(_) => accounted_at = Some(Instant::now()),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot count the machines' usage; trying again next pass")
                        }
                    }
                }
                let recorded = match history::record(&db, &world, now_ms(), &mut recorder).await {
                    Ok(wrote) => wrote,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record the pools' history; trying again next pass");
                        false
                    }
                };
                if recorded || !output.actions.is_empty() {
                    engine.note_change();
                }
            }
            Err(StoreError::Conflict(why)) => {
                conflicts_in_a_row += 1;
                engine.record_conflict();
                tracing::debug!(%why, "pass rolled back; running it again on fresh state");
                if conflicts_in_a_row >= CONFLICT_BURST {
                    // Something keeps changing, or a write keeps failing: back off, up to a
                    // second, and say so, rather than spin.
                    let exp = (conflicts_in_a_row - CONFLICT_BURST).min(7);
                    if conflicts_in_a_row.is_multiple_of(20) {
                        tracing::warn!(%why, passes = conflicts_in_a_row, "engine passes keep rolling back");
                    }
                    tokio::time::sleep(Duration::from_millis(10 << exp)).await;
                }
                continue;
            }
            Err(StoreError::Db(e)) => {
                tracing::error!(error = %e, "cannot persist the pass; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        }

        let wait = output
            .next_due
            .map(|due| Duration::from_millis((due - now_ms()).max(0) as u64))
            .unwrap_or(period)
            .min(period);
        tokio::select! {
            _ = engine.woken() => {}
            Some(o) = rx.recv() => carry.outcomes.push(o),
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for token in carry.cancels.values().chain(carry.pool_hooks.values()) {
        token.cancel();
    }
    Ok(())
}

fn report_broken(loaded: &Loaded, carry: &mut Carry) {
    for (pool, why) in &loaded.broken {
        if carry.reported_broken.insert((pool.clone(), why.clone())) {
            tracing::error!(%pool, %why, "pool definition in the database is invalid; the engine leaves the pool alone");
        }
    }
}

/// Logs, once a month per pool, when its cost passes 80 % of its cap and when it reaches it.
fn report_caps(loaded: &Loaded, carry: &mut Carry) {
    let month = store::month_start(now_ms());
    for pool in loaded.world.pools.values() {
        let Some(cap) = pool.config.monthly_cap.filter(|c| *c > 0.0) else {
            continue;
        };
        let cost = pool.runtime.month_cost;
        let level = if cost >= cap {
            2
        } else if cost >= 0.8 * cap {
            1
        } else {
            continue;
        };
        if carry
            .reported_caps
            .insert((pool.config.name.clone(), month.clone(), level))
        {
            if level == 2 {
                tracing::warn!(pool = %pool.config.name, cost = format!("{cost:.2}"), cap, "monthly cap reached: no new machines start in this pool until next month");
            } else {
                tracing::warn!(pool = %pool.config.name, cost = format!("{cost:.2}"), cap, "80 % of the monthly cap used");
            }
        }
    }
}

pub(super) fn now_ms() -> Ms {
    chrono::Utc::now().timestamp_millis()
}

#[allow(clippy::too_many_arguments)]
fn launch_hooks(
    engine: &Engine,
    world: &World,
    data: &HashMap<i64, Vec<u8>>,
    actions: &[Action],
    started: Vec<store::Started>,
    carry: &mut Carry,
    tx: &mpsc::UnboundedSender<HookOutcome>,
    livechecks: &Arc<Semaphore>,
) {
    let mut started = started.into_iter();
    for action in actions {
        let (kind, resource, pool, spec_for) = match action {
            Action::Start { .. } => {
                let Some(s) = started.next() else { continue };
                let Some(pool) = world.pools.get(&s.pool) else {
                    continue;
                };
                let spec = HookSpec {
                    kind: HookKind::New,
                    command: pool.config.cmd_new.clone(),
                    pool: s.pool.clone(),
                    resource_id: s.id,
                    name: Some(s.name.clone()),
                    id_in_pool: Some(s.id_in_pool),
                    counters: s.counters.clone(),
                    data: None,
                    timeout: secs(pool.config.timeouts.new),
                    extra_env: BTreeMap::new(),
                    credential: pool.config.credential_id,
                };
                (HookKind::New, s.id, s.pool, Some(spec))
            }
            Action::Delete { resource } => (HookKind::Delete, *resource, String::new(), None),
            Action::Release {
                resource,
                run_hook: true,
            } => (HookKind::Release, *resource, String::new(), None),
            Action::Livecheck { resource } => (HookKind::Livecheck, *resource, String::new(), None),
            Action::List { pool } => (HookKind::List, 0, pool.clone(), None),
            Action::DeleteUnknown { pool, name } => {
                let Some(p) = world.pools.get(pool) else {
                    continue;
                };
                let spec = unknown_delete_spec(&p.config, name);
                tracing::warn!(%pool, %name, "deleting a machine the cloud lists but the engine does not know");
                let token = CancellationToken::new();
                carry
                    .pool_hooks
                    .insert((pool.clone(), name.clone()), token.clone());
                spawn(engine, spec, tx.clone(), token, None, {
                    let (pool, name) = (pool.clone(), name.clone());
                    move |_| HookOutcome::UnknownDeleted { pool, name }
                });
                continue;
            }
            Action::CancelHook { resource } => {
                if let Some(token) = carry.cancels.get(resource) {
                    token.cancel();
                }
                continue;
            }
            _ => continue,
        };

        let spec = match spec_for {
            Some(spec) => spec,
            None if kind == HookKind::List => {
                let Some(p) = world.pools.get(&pool) else {
                    continue;
                };
                HookSpec {
                    kind,
                    command: p.config.cmd_list.clone().unwrap_or_default(),
                    pool: pool.clone(),
                    resource_id: 0,
                    name: None,
                    id_in_pool: None,
                    counters: Vec::new(),
                    data: None,
                    timeout: secs(p.config.timeouts.list),
                    extra_env: BTreeMap::new(),
                    credential: p.config.credential_id,
                }
            }
            None => {
                let Some(r) = world.resources.get(&resource) else {
                    continue;
                };
                let Some(p) = world.pools.get(&r.pool) else {
                    continue;
                };
                let command = match kind {
                    HookKind::Delete => p.config.cmd_delete.clone(),
                    HookKind::Release => p.config.cmd_release.clone().unwrap_or_default(),
                    HookKind::Livecheck => p.config.cmd_livecheck.clone().unwrap_or_default(),
                    _ => continue,
                };
                HookSpec {
                    kind,
                    command,
                    pool: r.pool.clone(),
                    resource_id: r.id,
                    name: Some(r.name.clone()),
                    id_in_pool: Some(r.id_in_pool),
                    counters: r.counters.clone(),
                    data: Some(data.get(&r.id).cloned().unwrap_or_default()),
                    timeout: secs(p.config.timeouts.for_kind(kind)),
                    extra_env: BTreeMap::new(),
                    credential: p.config.credential_id,
                }
            }
        };

        let token = CancellationToken::new();
        if kind == HookKind::List {
            carry
                .pool_hooks
                .insert((pool.clone(), String::new()), token.clone());
        } else {
            carry.busy.insert(resource, kind);
            carry.cancels.insert(resource, token.clone());
        }
        let permit = (kind == HookKind::Livecheck).then(|| livechecks.clone());
        spawn(engine, spec, tx.clone(), token, permit, move |run| {
            outcome(kind, resource, pool, run)
        });
    }
}

/// The `cmd_delete` of a machine the cloud lists but the engine does not know: no machine id
/// (as resalloc), the listed name, the pool's delete timeout, the pool's own log.
fn unknown_delete_spec(pool: &PoolConfig, name: &str) -> HookSpec {
    HookSpec {
        kind: HookKind::Delete,
        command: pool.cmd_delete.clone(),
        pool: pool.name.clone(),
        resource_id: 0,
        name: Some(name.to_string()),
        id_in_pool: None,
        counters: Vec::new(),
        data: None,
        timeout: secs(pool.timeouts.delete),
        extra_env: BTreeMap::new(),
        credential: pool.credential_id,
    }
}

fn outcome(kind: HookKind, resource: i64, pool: String, run: hooks::HookRun) -> HookOutcome {
    let result = match run.result {
        HookRunResult::Cancelled => return HookOutcome::Cancelled { resource, kind },
        HookRunResult::Finished(r) => r,
        // Nothing ran: a delete must run again (the machine still exists), a start created
        // nothing, a release did not clean the machine (so it goes), a livecheck says nothing.
        HookRunResult::NotStarted => match kind {
            HookKind::Delete => {
                return HookOutcome::Deleted {
                    resource,
                    timed_out: true,
                };
            }
            HookKind::Livecheck => return HookOutcome::Cancelled { resource, kind },
            _ => HookResult::Failed,
        },
    };
    match kind {
        HookKind::New => HookOutcome::Started {
            resource,
            result,
            data: run.stdout,
            took_ms: run.took.as_millis() as Ms,
        },
        HookKind::Release => HookOutcome::Released { resource, result },
        HookKind::Delete => HookOutcome::Deleted {
            resource,
            timed_out: result == HookResult::TimedOut,
        },
        HookKind::Livecheck => HookOutcome::Checked { resource, result },
        HookKind::List => HookOutcome::Listed {
            pool,
            names: (result == HookResult::Success).then(|| hooks::listed_names(&run.stdout)),
        },
    }
}

fn spawn(
    engine: &Engine,
    spec: HookSpec,
    tx: mpsc::UnboundedSender<HookOutcome>,
    cancel: CancellationToken,
    permits: Option<Arc<Semaphore>>,
    make: impl FnOnce(hooks::HookRun) -> HookOutcome + Send + 'static,
) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let _permit = match &permits {
            Some(s) => tokio::select! {
                permit = s.clone().acquire_owned() => permit.ok(),
                // Cancelled while waiting for its turn: it never ran.
                _ = cancel.cancelled() => {
                    let _ = tx.send(make(hooks::HookRun {
                        result: HookRunResult::Cancelled,
                        stdout: Vec::new(),
                        took: Duration::ZERO,
                    }));
                    engine.wake();
                    return;
                }
            },
            None => None,
        };
        engine.hook_started();
        let run = hooks::run(&engine.settings().hooks, &spec, &cancel).await;
        engine.hook_finished();
        engine
            .metrics()
            .hook_ran(spec.kind, run.result, run.took.as_secs_f64());
        if run.result == HookRunResult::NotStarted {
            // The machine (disk full, no processes left) will not do better at once: retry in
            // a while rather than on every pass.
            tracing::error!(kind = %spec.kind, resource = spec.resource_id, pool = %spec.pool, "the hook could not be started; retrying in 5 s");
            tokio::time::sleep(NOT_STARTED_BACKOFF).await;
        }
        let _ = tx.send(make(run));
        engine.wake();
    });
}

/// Feeds the takeTicket → machine histogram with the tickets a pass assigned, off the
/// pass's path (one small query per pass that assigned something).
fn observe_ready(engine: &Engine, tickets: Vec<i64>, now: Ms) {
    if tickets.is_empty() {
        return;
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
        let ids: Vec<i32> = tickets
            .iter()
            .filter_map(|t| i32::try_from(*t).ok())
            .collect();
        for chunk in ids.chunks(500) {
            let taken = crate::entities::tickets::Entity::find()
                .filter(crate::entities::tickets::Column::Id.is_in(chunk.to_vec()))
                .select_only()
                .column(crate::entities::tickets::Column::CreatedAt)
                .into_tuple::<chrono::DateTime<chrono::Utc>>()
                .all(engine.db())
                .await;
            match taken {
                Ok(times) => {
                    for t in times {
                        let waited = (now - t.timestamp_millis()).max(0) as f64 / 1000.0;
                        engine.metrics().ticket_ready_seconds.observe(waited);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read when assigned tickets were taken")
                }
            }
        }
    });
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_machines_are_deleted_with_the_delete_timeout_into_the_pools_log() {
        let mut pool = PoolConfig::new("aws_x86", "new", "delete-it");
        pool.timeouts.list = 30;
        pool.timeouts.delete = 900;
        let spec = unknown_delete_spec(&pool, "aws_x86_00000042");
        assert_eq!(spec.timeout, Duration::from_secs(900));
        assert_eq!(spec.command, "delete-it");
        assert_eq!(spec.name.as_deref(), Some("aws_x86_00000042"));
        assert_eq!(
            spec.log_file(std::path::Path::new("/logs")),
            std::path::Path::new("/logs/hooks/delete-unknown_aws_x86")
        );
    }
}
