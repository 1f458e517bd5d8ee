//! The deterministic heart of the engine: one pass takes the world and the time and decides
//! what to do, following resalloc's manager (reference §1.6–1.9) and fixing what its users
//! asked for. It runs no command, reads no clock and touches no database: the runner does
//! that with the [`Action`]s it returns, and tests drive it with a simulated clock.
//!
//! A pass also updates the world it was given as if its actions had been carried out, so a
//! simulation can keep going from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::*;

/// The score bonus of a machine already used by the ticket's sandbox (resalloc's
/// `REUSED_RESOURCE_PRIORITY`).
pub const REUSE_BONUS: i64 = 500;

/// One decision of a pass. The runner persists all of a pass's actions in one transaction and
/// only then starts the hooks they ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `cmd_new` succeeded: the machine is UP with this data and the pool's tags.
    MarkUp {
        resource: i64,
        data: Vec<u8>,
        tags: Vec<Tag>,
    },
    /// The machine no longer exists: ENDED, its id in pool and named counters freed.
    MarkEnded { resource: i64 },
    /// A start attempt finished; feeds the pool's success rate and average start time.
    StartStats {
        pool: String,
        success: bool,
        took_ms: Ms,
    },
    /// A livecheck finished.
    Checked { resource: i64, ok: bool },
    /// `cmd_release` succeeded: the released machine is UP again, ready for reuse.
    ReleaseDone { resource: i64 },
    /// The machine's ticket was closed: the machine is released (RELEASING if `run_hook`).
    Release { resource: i64, run_hook: bool },
    /// The machine goes to DELETE_REQUEST; its open ticket, if any, FAILED.
    RequestDelete {
        resource: i64,
        reason: DeleteReason,
        fail_ticket: Option<i64>,
    },
    /// Stop the hook the machine is busy with, so it can be deleted.
    CancelHook { resource: i64 },
    /// DELETE_REQUEST → DELETING, and run `cmd_delete`.
    Delete { resource: i64 },
    /// `cmd_delete` timed out: back to DELETE_REQUEST, so it runs again.
    RetryDelete { resource: i64 },
    /// Insert a STARTING machine and run `cmd_new`.
    Start {
        pool: String,
        id_in_pool: u32,
        counters: Vec<(String, u32)>,
    },
    /// Give the machine to the ticket.
    Assign {
        ticket: i64,
        resource: i64,
        sandbox: String,
        ticket_had_sandbox: bool,
        resource_had_sandbox: bool,
    },
    /// Run `cmd_livecheck` on the machine.
    Livecheck { resource: i64 },
    /// Run the pool's `cmd_list`.
    List { pool: String },
    /// Run `cmd_delete` for a machine the cloud has and the database does not.
    DeleteUnknown { pool: String, name: String },
}

/// What a pass decided, and when the next pass is due at the latest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassOutput {
    pub actions: Vec<Action>,
    pub next_due: Option<Ms>,
}

impl PassOutput {
    /// The tickets this pass gave a machine.
    pub fn assigned_tickets(&self) -> impl Iterator<Item = i64> + '_ {
        self.actions.iter().filter_map(|a| match a {
            Action::Assign { ticket, .. } => Some(*ticket),
            _ => None,
        })
    }
}

/// Runs one pass. `new_sandbox` names the sandbox of a ticket that came without one, so that
/// its machine is never reused by anyone else.
pub fn pass(world: &mut World, now: Ms, new_sandbox: &mut dyn FnMut(i64) -> String) -> PassOutput {
    let mut pass = Pass {
        world,
        now,
        actions: Vec::new(),
        due: Due::default(),
    };
    pass.apply_outcomes();
    pass.recover_lost_hooks();
    pass.release_closed();
    let planned = pass.plan_starts_for_waiting();
    pass.request_removals();
    pass.collect_garbage();
    pass.allocate(&planned);
    pass.schedule_lists();
    pass.schedule_livechecks();
    pass.assign_tickets(new_sandbox);
    PassOutput {
        actions: pass.actions,
        next_due: pass.due.0,
    }
}

/// The names every pool that is not retired marks as on-demand.
pub fn on_demand_tags(world: &World) -> BTreeSet<String> {
    world
        .pools
        .values()
        .filter(|p| p.config.state != PoolState::Retired)
        .flat_map(|p| p.config.tags_on_demand.iter().map(|t| t.name.clone()))
        .collect()
}

/// Waiting tickets ordered as resalloc processes them: on-demand first, then oldest.
pub fn waiting_order(world: &World) -> Vec<i64> {
    let on_demand = on_demand_tags(world);
    let mut waiting: Vec<(bool, i64)> = world
        .tickets
        .values()
        .filter(|t| t.is_waiting())
        .map(|t| (!t.tags.iter().any(|tag| on_demand.contains(tag)), t.id))
        .collect();
    waiting.sort_unstable();
    waiting.into_iter().map(|(_, id)| id).collect()
}

/// The earliest time something becomes due.
#[derive(Default)]
struct Due(Option<Ms>);

impl Due {
    fn at(&mut self, t: Ms) {
        self.0 = Some(self.0.map_or(t, |d| d.min(t)));
    }
}

struct Pass<'w> {
    world: &'w mut World,
    now: Ms,
    actions: Vec<Action>,
    due: Due,
}

fn secs(s: u32) -> Ms {
    Ms::from(s) * 1000
}

impl Pass<'_> {
    fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.world.pools.get(name).map(|p| &p.config)
    }

    fn on_demand_tags(&self) -> BTreeSet<String> {
        on_demand_tags(self.world)
    }

    fn request_delete(&mut self, id: i64, reason: DeleteReason) {
        let Some(r) = self.world.resources.get_mut(&id) else {
            return;
        };
        if matches!(
            r.state,
            RState::DeleteRequest | RState::Deleting | RState::Ended
        ) {
            return;
        }
        let fail_ticket = r.ticket.filter(|t| {
            self.world
                .tickets
                .get(t)
                .is_some_and(|t| t.state == TState::Open)
        });
        r.state = RState::DeleteRequest;
        if let Some(t) = fail_ticket
            && let Some(ticket) = self.world.tickets.get_mut(&t)
        {
            ticket.state = TState::Failed;
        }
        self.actions.push(Action::RequestDelete {
            resource: id,
            reason,
            fail_ticket,
        });
    }

    fn end(&mut self, id: i64) {
        self.world.resources.remove(&id);
        self.actions.push(Action::MarkEnded { resource: id });
    }

    /// Step 0: results of hooks that finished since the last pass.
    fn apply_outcomes(&mut self) {
        let now = self.now;
        for outcome in std::mem::take(&mut self.world.outcomes) {
            match outcome {
                HookOutcome::Started {
                    resource,
                    result,
                    data,
                    took_ms,
                } => {
                    self.world.busy.remove(&resource);
                    let Some(r) = self.world.resources.get(&resource) else {
                        continue;
                    };
                    let pool = r.pool.clone();
                    self.actions.push(Action::StartStats {
                        pool: pool.clone(),
                        success: result == HookResult::Success,
                        took_ms,
                    });
                    if r.state != RState::Starting {
                        // Deleted while starting: the delete that follows will clean up.
                        continue;
                    }
                    match result {
                        HookResult::Success => {
                            let tags: Vec<Tag> = self
                                .pool(&pool)
                                .map(|p| p.all_tags().cloned().collect())
                                .unwrap_or_default();
                            let r = self
                                .world
                                .resources
                                .get_mut(&resource)
                                .expect("checked above");
                            r.state = RState::Up;
                            r.tags = tags.clone();
                            r.up_at = Some(now);
                            r.check_last = Some(now);
                            self.actions.push(Action::MarkUp {
                                resource,
                                data,
                                tags,
                            });
                        }
                        // resalloc's contract: a failing cmd_new cleaned up after itself.
                        HookResult::Failed => self.end(resource),
                        // A hung cmd_new may have left a machine behind: delete it.
                        HookResult::TimedOut => {
                            self.request_delete(resource, DeleteReason::StartTimedOut)
                        }
                    }
                }
                HookOutcome::Released { resource, result } => {
                    self.world.busy.remove(&resource);
                    let Some(r) = self.world.resources.get_mut(&resource) else {
                        continue;
                    };
                    if r.state != RState::Releasing {
                        continue;
                    }
                    if result == HookResult::Success {
                        r.state = RState::Up;
                        self.actions.push(Action::ReleaseDone { resource });
                    } else {
                        self.request_delete(resource, DeleteReason::ReleaseFailed);
                    }
                }
                HookOutcome::Deleted {
                    resource,
                    timed_out,
                } => {
                    self.world.busy.remove(&resource);
                    let Some(r) = self.world.resources.get_mut(&resource) else {
                        continue;
                    };
                    if r.state != RState::Deleting {
                        continue;
                    }
                    if timed_out {
                        r.state = RState::DeleteRequest;
                        self.actions.push(Action::RetryDelete { resource });
                    } else {
                        self.end(resource);
                    }
                }
                HookOutcome::Checked { resource, result } => {
                    self.world.busy.remove(&resource);
                    let Some(r) = self.world.resources.get_mut(&resource) else {
                        continue;
                    };
                    if r.state != RState::Up {
                        continue;
                    }
                    let ok = result == HookResult::Success;
                    r.check_last = Some(now);
                    r.check_failed = if ok { 0 } else { r.check_failed + 1 };
                    self.actions.push(Action::Checked { resource, ok });
                }
                HookOutcome::Cancelled { resource, .. } => {
                    self.world.busy.remove(&resource);
                }
                HookOutcome::Listed { pool, names } => {
                    self.world.listing.remove(&pool);
                    if let Some(names) = names {
                        self.judge_unknown(&pool, names);
                    }
                }
                HookOutcome::UnknownDeleted { .. } => {}
            }
        }
    }

    /// resalloc's restart rule, applied on every pass: a machine caught STARTING, RELEASING
    /// or DELETING with no hook running for it (its hook was lost: a crash, a commit whose
    /// answer never came) is deleted, so it never holds `max_starting` or leaks.
    fn recover_lost_hooks(&mut self) {
        let lost: Vec<(i64, RState)> = self
            .world
            .resources
            .values()
            .filter(|r| {
                matches!(
                    r.state,
                    RState::Starting | RState::Releasing | RState::Deleting
                )
            })
            .filter(|r| !self.world.busy.contains_key(&r.id))
            .filter(|r| self.world.pools.contains_key(&r.pool))
            .map(|r| (r.id, r.state))
            .collect();
        for (id, state) in lost {
            if state == RState::Deleting {
                self.world
                    .resources
                    .get_mut(&id)
                    .expect("listed above")
                    .state = RState::DeleteRequest;
                self.actions.push(Action::RetryDelete { resource: id });
            } else {
                self.request_delete(id, DeleteReason::Restart);
            }
        }
    }

    /// Nodepool's rule for leaked machines: delete one only when two listings at least
    /// `unknown_min_age` apart both report it, so a machine between our insert and its
    /// provider's API catching up is never killed.
    fn judge_unknown(&mut self, pool: &str, names: Vec<String>) {
        let Some(config) = self.pool(pool) else {
            return;
        };
        let min_age = secs(config.unknown_min_age);
        let known = self.world.known_names();
        let listed: BTreeSet<String> = names
            .into_iter()
            .filter(|n| !n.is_empty() && !known.contains(n.as_str()))
            .collect();
        let now = self.now;
        // Forget machines that are gone or became known.
        self.world
            .unknown
            .retain(|(p, n), _| p != pool || listed.contains(n));
        for name in listed {
            let key = (pool.to_string(), name.clone());
            match self.world.unknown.get(&key) {
                Some(&first) if now - first >= min_age => {
                    self.world.unknown.remove(&key);
                    self.actions.push(Action::DeleteUnknown {
                        pool: pool.to_string(),
                        name,
                    });
                }
                Some(_) => {}
                None => {
                    self.world.unknown.insert(key, now);
                }
            }
        }
    }

    /// Step 1: machines whose ticket was closed are released (resalloc's
    /// `detect_closed_tickets`).
    fn release_closed(&mut self) {
        let now = self.now;
        let closed: Vec<i64> = self
            .world
            .resources
            .values()
            .filter(|r| r.state == RState::Up)
            // A livecheck still running on it finishes first: one hook per machine at a time.
            .filter(|r| !self.world.busy.contains_key(&r.id))
            .filter(|r| {
                r.ticket.is_some_and(|t| {
                    self.world
                        .tickets
                        .get(&t)
                        .is_none_or(|t| t.state != TState::Open)
                })
            })
            .map(|r| r.id)
            .collect();
        for id in closed {
            let ticket = self.world.resources[&id]
                .ticket
                .expect("filtered on a ticket");
            if self
                .world
                .tickets
                .get(&ticket)
                .is_some_and(|t| t.state == TState::Failed)
            {
                self.request_delete(id, DeleteReason::Requested);
                continue;
            }
            let run_hook = self
                .pool(&self.world.resources[&id].pool)
                .is_some_and(|p| p.cmd_release.is_some());
            let r = self.world.resources.get_mut(&id).expect("listed above");
            r.ticket = None;
            r.released_at = Some(now);
            r.releases += 1;
            if run_hook {
                r.state = RState::Releasing;
            }
            self.world.tickets.remove(&ticket);
            self.actions.push(Action::Release {
                resource: id,
                run_hook,
            });
        }
    }

    fn waiting_order(&self) -> Vec<i64> {
        waiting_order(self.world)
    }

    /// Step 2: how many machines each pool starts for waiting tickets (resalloc's
    /// `_decide_where_to_start_on_demand_instances`, extended to `start_on_waiting` pools).
    ///
    /// A ticket starts nothing when a machine that could serve it already exists or starts:
    /// a fresh one, or one reserved for the ticket's own sandbox. Unlike resalloc, a machine
    /// held for another sandbox's reuse is not counted, so it never blocks the ticket.
    fn plan_starts_for_waiting(&mut self) -> BTreeMap<String, u32> {
        let on_demand = self.on_demand_tags();
        // Machines that could serve a waiting ticket, per pool.
        let mut fresh: BTreeMap<&str, u32> = BTreeMap::new();
        let mut reserved: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        let mut on: BTreeMap<&str, u32> = BTreeMap::new();
        let mut starting: BTreeMap<&str, u32> = BTreeMap::new();
        for r in self.world.resources.values() {
            *on.entry(&r.pool).or_default() += 1;
            let serving = match r.state {
                RState::Starting => {
                    *starting.entry(&r.pool).or_default() += 1;
                    true
                }
                RState::Up => r.ticket.is_none() && r.check_failed == 0,
                RState::Releasing => true,
                _ => false,
            };
            if !serving {
                continue;
            }
            match &r.sandbox {
                Some(s) => *reserved.entry((&r.pool, s)).or_default() += 1,
                None => *fresh.entry(&r.pool).or_default() += 1,
            }
        }

        let mut planned: BTreeMap<String, u32> = BTreeMap::new();
        for id in self.waiting_order() {
            let ticket = &self.world.tickets[&id];
            let is_on_demand = ticket.tags.iter().any(|t| on_demand.contains(t));
            let capable: Vec<&Pool> = self
                .world
                .pools
                .values()
                .filter(|p| !p.config.is_winding_down() && p.config.serves(&ticket.tags).is_some())
                .collect();
            if capable.is_empty() {
                continue;
            }
            let sandbox = ticket.sandbox.as_deref();
            let has_machine = capable.iter().any(|p| {
                let own = sandbox
                    .and_then(|s| reserved.get_mut(&(p.config.name.as_str(), s)))
                    .filter(|n| **n > 0);
                if let Some(n) = own {
                    *n -= 1;
                    return true;
                }
                false
            }) || capable.iter().any(|p| {
                match fresh.get_mut(p.config.name.as_str()) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                }
            });
            if has_machine {
                continue;
            }
            let mut startable: Vec<(i64, &PoolConfig)> = capable
                .iter()
                .filter(|p| p.may_start())
                .map(|p| &p.config)
                .filter(|p| {
                    if is_on_demand {
                        p.is_on_demand()
                    } else {
                        p.start_on_waiting && !p.is_on_demand()
                    }
                })
                .map(|p| (p.tags_priority(&ticket.tags).unwrap_or(0), p))
                .collect();
            startable.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
            for (_, p) in startable {
                let n = planned.get(&p.name).copied().unwrap_or(0);
                let on = on.get(p.name.as_str()).copied().unwrap_or(0);
                let start = starting.get(p.name.as_str()).copied().unwrap_or(0);
                if n + on < p.max && n + start < p.max_starting {
                    *planned.entry(p.name.clone()).or_default() += 1;
                    break;
                }
            }
        }
        planned
    }

    /// Step 3: machines that should go (resalloc's `_request_resource_removal`), plus pools
    /// that drain or whose `max` was lowered.
    fn request_removals(&mut self) {
        let now = self.now;
        let mut to_delete: Vec<(i64, DeleteReason)> = Vec::new();
        let waiting: Vec<Vec<String>> = self
            .world
            .tickets
            .values()
            .filter(|t| t.is_waiting())
            .map(|t| t.tags.clone())
            .collect();

        for pool in self.world.pools.values() {
            let p = &pool.config;
            let mine: Vec<&Resource> = self
                .world
                .resources
                .values()
                .filter(|r| r.pool == p.name)
                .collect();

            for r in &mine {
                if r.state == RState::Up
                    && p.livecheck_attempts > 0
                    && r.check_failed >= p.livecheck_attempts
                {
                    to_delete.push((r.id, DeleteReason::LivecheckFailed));
                }
            }

            if p.is_winding_down() {
                for r in &mine {
                    let idle = r.state == RState::Up && r.ticket.is_none();
                    if idle || r.state == RState::Starting {
                        to_delete.push((r.id, DeleteReason::Draining));
                    }
                }
                continue;
            }

            for r in mine
                .iter()
                .filter(|r| r.state == RState::Up && r.ticket.is_none())
            {
                let Some(released_at) = r.released_at else {
                    continue;
                };
                let reason = if p.reuse_opportunity_time == 0 {
                    Some(DeleteReason::ReuseOff)
                } else if released_at + secs(p.reuse_opportunity_time) < now {
                    Some(DeleteReason::ReuseWindowExpired)
                } else if p.reuse_max_time > 0
                    && r.sandboxed_since
                        .is_some_and(|s| s + secs(p.reuse_max_time) < now)
                {
                    Some(DeleteReason::ReuseMaxTime)
                } else if p.reuse_max_count > 0 && r.releases > p.reuse_max_count {
                    Some(DeleteReason::ReuseMaxCount)
                } else {
                    None
                };
                match reason {
                    Some(reason) => to_delete.push((r.id, reason)),
                    None => {
                        // Wake when the reuse window or the sandbox time runs out.
                        self.due
                            .at(released_at + secs(p.reuse_opportunity_time) + 1);
                        if p.reuse_max_time > 0
                            && let Some(s) = r.sandboxed_since
                        {
                            self.due.at(s + secs(p.reuse_max_time) + 1);
                        }
                    }
                }
            }

            // Fresh machines nobody waits for, in on-demand pools (resalloc) and beyond the
            // preallocation in start_on_waiting pools (so a burst does not stay paid for).
            if p.is_on_demand() || p.start_on_waiting {
                let fresh: Vec<i64> = mine.iter().filter(|r| r.is_free()).map(|r| r.id).collect();
                let waiting_on_us = waiting
                    .iter()
                    .filter(|tags| p.serves(tags).is_some())
                    .count();
                let keep = waiting_on_us + p.effective_prealloc() as usize;
                for id in fresh.iter().take(fresh.len().saturating_sub(keep)) {
                    to_delete.push((*id, DeleteReason::OnDemandSurplus));
                }
            }

            // `max` lowered below what exists: idle machines go, never-used ones first. Machines
            // already on their way out, or picked above in this pass, are not counted again.
            let picked: BTreeSet<i64> = to_delete.iter().map(|(id, _)| *id).collect();
            let staying: Vec<&&Resource> = mine
                .iter()
                .filter(|r| !matches!(r.state, RState::DeleteRequest | RState::Deleting))
                .filter(|r| !picked.contains(&r.id))
                .collect();
            let excess = (staying.len() as u32).saturating_sub(p.max);
            if excess > 0 {
                let mut idle: Vec<&&&Resource> = staying
                    .iter()
                    .filter(|r| r.state == RState::Up && r.ticket.is_none())
                    .collect();
                idle.sort_by_key(|r| (r.releases > 0, r.id));
                for r in idle.into_iter().take(excess as usize) {
                    to_delete.push((r.id, DeleteReason::OverMax));
                }
            }
        }
        for (id, reason) in to_delete {
            self.request_delete(id, reason);
        }
    }

    /// Step 4: DELETE_REQUEST → DELETING (resalloc's `_garbage_collector`). A machine whose
    /// hook still runs has that hook stopped first (resalloc #6: STARTING machines can go).
    fn collect_garbage(&mut self) {
        let requested: Vec<i64> = self
            .world
            .resources
            .values()
            .filter(|r| r.state == RState::DeleteRequest)
            .map(|r| r.id)
            .collect();
        for id in requested {
            let r = &self.world.resources[&id];
            if r.ticket.is_some_and(|t| {
                self.world
                    .tickets
                    .get(&t)
                    .is_some_and(|t| t.state == TState::Open)
            }) {
                // resalloc refuses too: the ticket's owner still uses it.
                continue;
            }
            if !self.world.pools.contains_key(&r.pool) {
                // Its pool's definition is broken: the commands to run are unknown.
                continue;
            }
            match self.world.busy.get(&id) {
                Some(HookKind::Delete) => {}
                Some(_) => self.actions.push(Action::CancelHook { resource: id }),
                None => {
                    self.world
                        .resources
                        .get_mut(&id)
                        .expect("listed above")
                        .state = RState::Deleting;
                    self.world.busy.insert(id, HookKind::Delete);
                    self.actions.push(Action::Delete { resource: id });
                }
            }
        }
    }

    /// Step 5: start machines (resalloc's `_allocate_more_resources`): refill the
    /// preallocation (`free + starting < max_prealloc`) and start what step 2 planned, within
    /// `max`, `max_starting` and `start_delay`.
    fn allocate(&mut self, planned: &BTreeMap<String, u32>) {
        let now = self.now;
        let names: Vec<String> = self.world.pools.keys().cloned().collect();
        let mut used_counters: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for r in self.world.resources.values() {
            for (name, value) in &r.counters {
                used_counters
                    .entry(name.clone())
                    .or_default()
                    .insert(*value);
            }
        }
        for name in names {
            let pool = &self.world.pools[&name];
            let p = &pool.config;
            if !pool.may_start() {
                continue;
            }
            let mine = || self.world.resources.values().filter(|r| r.pool == name);
            let on = mine().count() as u32;
            let start = mine().filter(|r| r.state == RState::Starting).count() as u32;
            let free = mine().filter(|r| r.is_free()).count() as u32;
            let refill = p.effective_prealloc().saturating_sub(free + start);
            let wanted = refill + planned.get(&name).copied().unwrap_or(0);
            let mut count = wanted
                .min(p.max.saturating_sub(on))
                .min(p.max_starting.saturating_sub(start));
            if count == 0 {
                continue;
            }
            if p.start_delay > 0 {
                if let Some(last) = pool.runtime.last_start {
                    let next = last + secs(p.start_delay);
                    if next > now {
                        self.due.at(next);
                        continue;
                    }
                }
                count = 1;
                self.due.at(now + secs(p.start_delay));
            }
            let mut used_ids: BTreeSet<u32> = mine().map(|r| r.id_in_pool).collect();
            let counter_names = p.named_counters.clone();
            for _ in 0..count {
                let id_in_pool = smallest_free(&used_ids);
                used_ids.insert(id_in_pool);
                let counters = counter_names
                    .iter()
                    .map(|c| {
                        let used = used_counters.entry(c.clone()).or_default();
                        let v = smallest_free(used);
                        used.insert(v);
                        (c.clone(), v)
                    })
                    .collect();
                self.actions.push(Action::Start {
                    pool: name.clone(),
                    id_in_pool,
                    counters,
                });
            }
            self.world
                .pools
                .get_mut(&name)
                .expect("listed above")
                .runtime
                .last_start = Some(now);
        }
    }

    /// Step 6: `cmd_list` on its period, one at a time per pool.
    fn schedule_lists(&mut self) {
        let now = self.now;
        for pool in self.world.pools.values_mut() {
            let p = &pool.config;
            if p.cmd_list.is_none()
                || p.state == PoolState::Retired
                || self.world.listing.contains(&p.name)
            {
                continue;
            }
            let due = pool
                .runtime
                .last_list
                .map_or(now, |t| t + secs(p.list_period));
            if due <= now {
                pool.runtime.last_list = Some(now);
                self.world.listing.insert(p.name.clone());
                self.actions.push(Action::List {
                    pool: p.name.clone(),
                });
                self.due.at(now + secs(p.list_period));
            } else {
                self.due.at(due);
            }
        }
    }

    /// Step 7: livechecks of UP machines (taken or not) on their period.
    fn schedule_livechecks(&mut self) {
        let now = self.now;
        let mut checks = Vec::new();
        for r in self.world.resources.values() {
            if r.state != RState::Up || self.world.busy.contains_key(&r.id) {
                continue;
            }
            let Some(p) = self.world.pools.get(&r.pool).map(|p| &p.config) else {
                continue;
            };
            if p.cmd_livecheck.is_none() {
                continue;
            }
            let due = r.check_last.or(r.up_at).unwrap_or(now) + secs(p.livecheck_period);
            if due <= now {
                checks.push(r.id);
            } else {
                self.due.at(due);
            }
        }
        for id in checks {
            self.world.busy.insert(id, HookKind::Livecheck);
            self.actions.push(Action::Livecheck { resource: id });
        }
    }

    /// Step 8: give ready machines to waiting tickets (resalloc's `_assign_tickets`).
    ///
    /// Tickets go on-demand first, then oldest first. A ticket may take a machine whose tags
    /// include all of its own, and that is either unused or used before by the same sandbox.
    /// The best score wins (sum of the ticket's tag priorities, +500 for reuse), ties to the
    /// lowest machine id.
    ///
    /// Machines are grouped by (tags, sandbox), so a pass over thousands of tickets looks at
    /// a few groups per ticket rather than at every machine.
    fn assign_tickets(&mut self, new_sandbox: &mut dyn FnMut(i64) -> String) {
        let order = self.waiting_order();
        if order.is_empty() {
            return;
        }
        // Groups of ready machines. Unsandboxed groups are keyed by their tags; reserved ones
        // by sandbox as well and are only looked at by tickets of that sandbox.
        // A group's machines carry the same tags and admit the same tickets: a dedicated
        // pool's `tags_required` keep its machines from everyone else's builds.
        struct Group {
            tags: Vec<Tag>,
            required: Vec<String>,
            ids: BTreeSet<i64>,
        }
        impl Group {
            fn score(&self, requested: &[String]) -> Option<i64> {
                let admitted = self
                    .required
                    .iter()
                    .all(|t| requested.iter().any(|r| r == t));
                if admitted {
                    score(self.tags.iter(), requested)
                } else {
                    None
                }
            }
        }
        let mut free_groups: Vec<Group> = Vec::new();
        let mut free_index: HashMap<(Vec<Tag>, Vec<String>), usize> = HashMap::new();
        let mut reserved: HashMap<String, Vec<Group>> = HashMap::new();
        let mut remaining = 0usize;
        for r in self.world.resources.values() {
            let Some(pool) = self.pool(&r.pool).filter(|p| !p.is_winding_down()) else {
                continue;
            };
            if !r.is_ready() {
                continue;
            }
            remaining += 1;
            let mut tags = r.tags.clone();
            tags.sort();
            let mut required = pool.tags_required.clone();
            required.sort();
            match &r.sandbox {
                None => {
                    let idx = *free_index
                        .entry((tags.clone(), required.clone()))
                        .or_insert_with(|| {
                            free_groups.push(Group {
                                tags,
                                required,
                                ids: BTreeSet::new(),
                            });
                            free_groups.len() - 1
                        });
                    free_groups[idx].ids.insert(r.id);
                }
                Some(s) => {
                    let groups = reserved.entry(s.clone()).or_default();
                    match groups
                        .iter_mut()
                        .find(|g| g.tags == tags && g.required == required)
                    {
                        Some(g) => {
                            g.ids.insert(r.id);
                        }
                        None => groups.push(Group {
                            tags,
                            required,
                            ids: BTreeSet::from([r.id]),
                        }),
                    }
                }
            }
        }
        if remaining == 0 {
            return;
        }
        // Per distinct tag request: the free groups that match, with their scores.
        let mut matches: HashMap<Vec<String>, Vec<(usize, i64)>> = HashMap::new();

        for tid in order {
            if remaining == 0 {
                break;
            }
            let ticket = &self.world.tickets[&tid];
            let mut best: Option<(i64, i64, Option<usize>)> = None; // (score, id, free group)
            let mut consider = |score: i64, id: i64, group: Option<usize>| {
                if best.is_none_or(|(s, i, _)| score > s || (score == s && id < i)) {
                    best = Some((score, id, group));
                }
            };
            if let Some(groups) = ticket.sandbox.as_ref().and_then(|s| reserved.get(s)) {
                for g in groups {
                    if let (Some(score), Some(&id)) = (g.score(&ticket.tags), g.ids.first()) {
                        consider(score + REUSE_BONUS, id, None);
                    }
                }
            }
            let candidates = matches.entry(ticket.tags.clone()).or_insert_with(|| {
                free_groups
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| g.score(&ticket.tags).map(|s| (i, s)))
                    .collect()
            });
            for &(i, s) in candidates.iter() {
                if let Some(&id) = free_groups[i].ids.first() {
                    consider(s, id, Some(i));
                }
            }
            let Some((_, rid, group)) = best else {
                continue;
            };
            match group {
                Some(i) => {
                    free_groups[i].ids.remove(&rid);
                }
                None => {
                    let groups = reserved
                        .get_mut(ticket.sandbox.as_ref().expect("reserved match"))
                        .expect("found");
                    for g in groups.iter_mut() {
                        g.ids.remove(&rid);
                    }
                }
            }
            remaining -= 1;

            let ticket_had_sandbox = ticket.sandbox.is_some();
            let sandbox = ticket.sandbox.clone().unwrap_or_else(|| new_sandbox(tid));
            let r = self.world.resources.get_mut(&rid).expect("ready machine");
            let resource_had_sandbox = r.sandbox.is_some();
            r.ticket = Some(tid);
            if !resource_had_sandbox {
                r.sandbox = Some(sandbox.clone());
                r.sandboxed_since = Some(self.now);
            }
            let t = self.world.tickets.get_mut(&tid).expect("waiting ticket");
            t.resource = Some(rid);
            t.sandbox = Some(sandbox.clone());
            self.actions.push(Action::Assign {
                ticket: tid,
                resource: rid,
                sandbox,
                ticket_had_sandbox,
                resource_had_sandbox,
            });
        }
    }
}

fn smallest_free(used: &BTreeSet<u32>) -> u32 {
    let mut candidate = 0;
    for &v in used {
        if v != candidate {
            break;
        }
        candidate += 1;
    }
    candidate
}

/// Renders a machine name from the pool's `name_pattern` (resalloc's placeholders plus
/// `{id_in_pool}`): `id` is the machine id zero-padded to 8 digits, `datetime` UTC
/// `YYYYMMDD_HHMMSS`.
pub fn render_name(pattern: &str, pool: &str, id: i64, id_in_pool: u32, now: Ms) -> String {
    let datetime = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y%m%d_%H%M%S")
        .to_string();
    pattern
        .replace("{pool_name}", pool)
        .replace("{id_in_pool}", &id_in_pool.to_string())
        .replace("{id}", &format!("{id:08}"))
        .replace("{datetime}", &datetime)
}

/// The placeholders `render_name` knows.
pub const NAME_PLACEHOLDERS: &[&str] = &["pool_name", "id", "datetime", "id_in_pool"];

/// Exponential moving average with resalloc's α = 0.2.
pub fn ema(previous: Option<f64>, sample: f64) -> f64 {
    const ALPHA: f64 = 0.2;
    match previous {
        Some(p) => ALPHA * sample + (1.0 - ALPHA) * p,
        None => sample,
    }
}
