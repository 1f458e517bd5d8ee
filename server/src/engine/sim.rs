//! A simulated cloud and clock around the pure core, for tests: hooks take simulated time,
//! machines exist in a simulated cloud from the moment `cmd_new` starts, and a crash loses
//! everything the runner keeps in memory, as `kill -9` would.

use std::collections::{BTreeMap, BTreeSet};

use super::core::{self, Action, PassOutput, render_name};
use super::model::*;

/// How a simulated hook ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Ok,
    Fail,
    Hang,
}

/// A hook in flight.
#[derive(Debug, Clone)]
struct Pending {
    done_at: Ms,
    resource: Option<i64>,
    kind: HookKind,
    outcome: HookOutcome,
    /// Applied to the cloud when the hook completes.
    delete_name: Option<String>,
}

pub struct Sim {
    pub world: World,
    pub now: Ms,
    next_resource: i64,
    next_ticket: i64,
    /// Machines that exist in the simulated cloud.
    pub cloud: BTreeSet<String>,
    /// Every machine ever created in the cloud.
    pub created: Vec<String>,
    /// Deletions of machines that existed.
    pub deleted: Vec<String>,
    /// Deletions of machines that had already been deleted.
    pub redeleted: Vec<String>,
    pending: Vec<Pending>,
    pub boot_ms: Ms,
    pub hook_ms: Ms,
    /// Decides the fate of each hook.
    pub fate: Box<dyn FnMut(HookKind, i64) -> Fate>,
    pub log: Vec<Action>,
    /// Closed tickets, for the "each machine served one open ticket" check.
    pub closed: BTreeSet<i64>,
}

impl Sim {
    pub fn new(pools: Vec<PoolConfig>) -> Sim {
        let mut world = World::default();
        for p in pools {
            world.pools.insert(
                p.name.clone(),
                Pool {
                    config: p,
                    runtime: PoolRuntime::default(),
                },
            );
        }
        Sim {
            world,
            now: 1_700_000_000_000,
            next_resource: 1,
            next_ticket: 1,
            cloud: BTreeSet::new(),
            created: Vec::new(),
            deleted: Vec::new(),
            redeleted: Vec::new(),
            pending: Vec::new(),
            boot_ms: 2_000,
            hook_ms: 100,
            fate: Box::new(|_, _| Fate::Ok),
            log: Vec::new(),
            closed: BTreeSet::new(),
        }
    }

    pub fn take(&mut self, tags: &[&str], sandbox: Option<&str>) -> i64 {
        let id = self.next_ticket;
        self.next_ticket += 1;
        let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        tags.sort();
        tags.dedup();
        self.world.tickets.insert(
            id,
            Ticket {
                id,
                state: TState::Open,
                tags,
                sandbox: sandbox.map(str::to_string),
                resource: None,
            },
        );
        id
    }

    pub fn close(&mut self, id: i64) {
        if let Some(t) = self.world.tickets.get_mut(&id) {
            t.state = TState::Closed;
            self.closed.insert(id);
        }
    }

    /// The machine a ticket got, if any.
    pub fn machine_of(&self, ticket: i64) -> Option<i64> {
        self.world.tickets.get(&ticket).and_then(|t| t.resource)
    }

    pub fn pass(&mut self) -> PassOutput {
        let out = core::pass(&mut self.world, self.now, &mut |t| format!("random-{t}"));
        self.check_start_limits(&out.actions);
        for action in &out.actions {
            self.carry_out(action);
        }
        self.log.extend(out.actions.iter().cloned());
        self.check_invariants();
        out
    }

    /// Advances the clock by `ms`, completing the hooks that finish meanwhile.
    pub fn advance(&mut self, ms: Ms) {
        self.now += ms;
        let now = self.now;
        let (done, rest): (Vec<Pending>, Vec<Pending>) =
            self.pending.drain(..).partition(|p| p.done_at <= now);
        self.pending = rest;
        for p in done {
            if let Some(name) = p.delete_name {
                self.cloud_delete(&name);
            }
            self.world.outcomes.push(p.outcome);
        }
    }

    /// Runs passes and advances time until nothing is in flight and a pass decides nothing,
    /// or `limit_ms` of simulated time passed.
    pub fn settle(&mut self, step_ms: Ms, limit_ms: Ms) {
        let end = self.now + limit_ms;
        while self.now < end {
            let out = self.pass();
            if out.actions.is_empty() && self.pending.is_empty() && self.world.outcomes.is_empty() {
                return;
            }
            self.advance(step_ms);
        }
    }

    fn cloud_delete(&mut self, name: &str) {
        if self.cloud.remove(name) {
            self.deleted.push(name.to_string());
        } else if self.deleted.iter().any(|d| d == name) {
            self.redeleted.push(name.to_string());
        }
    }

    fn schedule(
        &mut self,
        after: Ms,
        resource: Option<i64>,
        kind: HookKind,
        outcome: HookOutcome,
        delete_name: Option<String>,
    ) {
        self.pending.push(Pending {
            done_at: self.now + after,
            resource,
            kind,
            outcome,
            delete_name,
        });
    }

    fn carry_out(&mut self, action: &Action) {
        match action {
            Action::Start {
                pool,
                id_in_pool,
                counters,
            } => {
                let id = self.next_resource;
                self.next_resource += 1;
                let config = &self.world.pools[pool].config;
                let name = render_name(&config.name_pattern, pool, id, *id_in_pool, self.now);
                let timeout = Ms::from(config.timeouts.new) * 1000;
                self.world.resources.insert(
                    id,
                    Resource::starting(id, pool, name.clone(), *id_in_pool, counters.clone()),
                );
                self.world.busy.insert(id, HookKind::New);
                let fate = (self.fate)(HookKind::New, id);
                if fate != Fate::Fail {
                    self.cloud.insert(name.clone());
                    self.created.push(name);
                }
                let (after, result) = match fate {
                    Fate::Ok => (self.boot_ms, HookResult::Success),
                    Fate::Fail => (self.boot_ms / 2, HookResult::Failed),
                    Fate::Hang => (timeout, HookResult::TimedOut),
                };
                let outcome = HookOutcome::Started {
                    resource: id,
                    result,
                    data: b"10.0.0.1\n".to_vec(),
                    took_ms: after,
                };
                self.schedule(after, Some(id), HookKind::New, outcome, None);
            }
            Action::Delete { resource } => {
                let name = self.world.resources[resource].name.clone();
                let timed_out = (self.fate)(HookKind::Delete, *resource) == Fate::Hang;
                let outcome = HookOutcome::Deleted {
                    resource: *resource,
                    timed_out,
                };
                self.schedule(
                    self.hook_ms,
                    Some(*resource),
                    HookKind::Delete,
                    outcome,
                    (!timed_out).then_some(name),
                );
            }
            Action::Release {
                resource,
                run_hook: true,
            } => {
                let result = match (self.fate)(HookKind::Release, *resource) {
                    Fate::Ok => HookResult::Success,
                    _ => HookResult::Failed,
                };
                let outcome = HookOutcome::Released {
                    resource: *resource,
                    result,
                };
                self.world.busy.insert(*resource, HookKind::Release);
                self.schedule(
                    self.hook_ms,
                    Some(*resource),
                    HookKind::Release,
                    outcome,
                    None,
                );
            }
            Action::Livecheck { resource } => {
                let result = match (self.fate)(HookKind::Livecheck, *resource) {
                    Fate::Ok => HookResult::Success,
                    _ => HookResult::Failed,
                };
                let outcome = HookOutcome::Checked {
                    resource: *resource,
                    result,
                };
                self.schedule(
                    self.hook_ms,
                    Some(*resource),
                    HookKind::Livecheck,
                    outcome,
                    None,
                );
            }
            Action::List { pool } => {
                let names: Vec<String> = self
                    .cloud
                    .iter()
                    .filter(|n| n.starts_with(pool.as_str()))
                    .cloned()
                    .collect();
                let outcome = HookOutcome::Listed {
                    pool: pool.clone(),
                    names: Some(names),
                };
                self.schedule(self.hook_ms, None, HookKind::List, outcome, None);
            }
            Action::DeleteUnknown { pool, name } => {
                let outcome = HookOutcome::UnknownDeleted {
                    pool: pool.clone(),
                    name: name.clone(),
                };
                self.schedule(
                    self.hook_ms,
                    None,
                    HookKind::Delete,
                    outcome,
                    Some(name.clone()),
                );
            }
            Action::CancelHook { resource } => {
                if let Some(i) = self
                    .pending
                    .iter()
                    .position(|p| p.resource == Some(*resource) && p.kind != HookKind::Delete)
                {
                    let p = self.pending.remove(i);
                    self.world.outcomes.push(HookOutcome::Cancelled {
                        resource: *resource,
                        kind: p.kind,
                    });
                }
            }
            _ => {}
        }
    }

    /// `kill -9` of the server and a restart: hooks in flight are lost (a delete in flight may
    /// or may not have happened in the cloud), memory is gone, and resalloc's restart rule runs.
    pub fn crash(&mut self, delete_happened: bool) {
        for p in std::mem::take(&mut self.pending) {
            if delete_happened && let Some(name) = p.delete_name {
                self.cloud_delete(&name);
            }
        }
        self.world.busy.clear();
        self.world.listing.clear();
        self.world.unknown.clear();
        self.world.outcomes.clear();
        for r in self.world.resources.values_mut() {
            if matches!(
                r.state,
                RState::Starting | RState::Deleting | RState::Releasing
            ) {
                r.state = RState::DeleteRequest;
            }
        }
    }

    /// Things that must hold after every pass.
    pub fn check_invariants(&self) {
        let mut holder: BTreeMap<i64, i64> = BTreeMap::new();
        for t in self.world.tickets.values() {
            if let (TState::Open, Some(r)) = (t.state, t.resource) {
                if let Some(other) = holder.insert(r, t.id) {
                    panic!(
                        "machine {r} is assigned to open tickets {other} and {}",
                        t.id
                    );
                }
                let res = self
                    .world
                    .resources
                    .get(&r)
                    .unwrap_or_else(|| panic!("ticket {} holds an ended machine", t.id));
                assert_eq!(res.ticket, Some(t.id), "machine and ticket disagree");
                if let Some(pool) = self.world.pools.get(&res.pool) {
                    assert!(
                        pool.config.admits(&t.tags),
                        "ticket {} without {:?} got machine {r} of the dedicated pool {}",
                        t.id,
                        pool.config.tags_required,
                        pool.config.name
                    );
                }
            }
        }
        for name in self.world.pools.keys() {
            let mine: Vec<&Resource> = self
                .world
                .resources
                .values()
                .filter(|r| &r.pool == name)
                .collect();
            let mut ids: Vec<u32> = mine.iter().map(|r| r.id_in_pool).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), mine.len(), "pool {name}: duplicate id_in_pool");
        }
    }

    /// A pass never starts machines beyond `max` or `max_starting` (lowering `max` may leave
    /// more machines than `max` for a while; starting more is the bug).
    fn check_start_limits(&self, actions: &[Action]) {
        for (name, pool) in &self.world.pools {
            let p = &pool.config;
            let starts = actions
                .iter()
                .filter(|a| matches!(a, Action::Start { pool, .. } if pool == name))
                .count() as u32;
            if starts == 0 {
                continue;
            }
            let on = self
                .world
                .resources
                .values()
                .filter(|r| &r.pool == name)
                .count() as u32;
            let starting = self
                .world
                .resources
                .values()
                .filter(|r| &r.pool == name && r.state == RState::Starting)
                .count() as u32;
            assert!(
                on + starts <= p.max,
                "pool {name}: {on} machines + {starts} starts > max {}",
                p.max
            );
            assert!(
                starting + starts <= p.max_starting,
                "pool {name}: {starting} starting + {starts} > max_starting {}",
                p.max_starting
            );
        }
    }

    /// Machines in the cloud that the engine no longer tracks.
    pub fn leaked(&self) -> Vec<String> {
        let known = self.world.known_names();
        self.cloud
            .iter()
            .filter(|n| !known.contains(n.as_str()))
            .cloned()
            .collect()
    }
}
