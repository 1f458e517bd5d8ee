//! Why a ticket is still waiting, answered from the same world a pass decides with and in the
//! same order ([`waiting_order`]): the tickets ahead claim the machines that start or wait for
//! them first, and what is left is explained by the limit of the pool that would serve the
//! ticket. Pure like the core: the world and the time in, one reason per waiting ticket out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::core::{REUSE_BONUS, on_demand_tags, waiting_order};
use super::model::*;

/// What the explanation needs beside the world.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// When each STARTING machine was created (epoch ms).
    pub started_at: BTreeMap<i64, Ms>,
    /// Each pool's average start time in seconds, when known.
    pub start_time_avg: BTreeMap<String, f64>,
}

/// A reason's stable identifier: tools match on these, never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitCode {
    /// A requested tag is offered by no pool that is not retired.
    NoPoolOffersTag,
    /// Every tag is offered somewhere, but no one pool offers them all.
    NoPoolOffersAllTags,
    /// The pools offering these tags are dedicated to builds carrying another tag.
    PoolDedicated,
    /// The only pools that could serve it are paused.
    PoolPaused,
    /// The only pools that could serve it are draining or retired.
    PoolDraining,
    /// The pool's monthly cost reached its cap.
    PoolOverCap,
    /// The pool has `max` machines, none free for this ticket.
    PoolAtMax,
    /// A machine the pool would reuse for another sandbox holds the last place under `max`.
    HeldForReuse,
    /// The pool already starts `max_starting` machines.
    PoolAtMaxStarting,
    /// The pool's `start_delay` has not passed since its last start.
    PoolStartDelay,
    /// The pool starts machines only to refill its preallocation, and every one is taken.
    PoolPreallocTaken,
    /// A machine is starting that this ticket will get.
    MachineStarting,
    /// A machine is running `cmd_release` and will serve this ticket next.
    MachineReleasing,
    /// A ready machine is there; the next pass assigns it.
    MachineReady,
    /// A machine will start for it at the next pass.
    StartPending,
}

impl WaitCode {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCode::NoPoolOffersTag => "no_pool_offers_tag",
            WaitCode::NoPoolOffersAllTags => "no_pool_offers_all_tags",
            WaitCode::PoolDedicated => "pool_dedicated",
            WaitCode::PoolPaused => "pool_paused",
            WaitCode::PoolDraining => "pool_draining",
            WaitCode::PoolOverCap => "pool_over_cap",
            WaitCode::PoolAtMax => "pool_at_max",
            WaitCode::HeldForReuse => "machine_held_for_reuse",
            WaitCode::PoolAtMaxStarting => "pool_at_max_starting",
            WaitCode::PoolStartDelay => "pool_start_delay",
            WaitCode::PoolPreallocTaken => "pool_prealloc_taken",
            WaitCode::MachineStarting => "machine_starting",
            WaitCode::MachineReleasing => "machine_releasing",
            WaitCode::MachineReady => "machine_ready",
            WaitCode::StartPending => "start_pending",
        }
    }

    /// Whether the ticket waits on something that resolves by itself (a boot, a pass) rather
    /// than on a limit or a missing pool.
    pub fn is_progress(self) -> bool {
        matches!(
            self,
            WaitCode::MachineStarting
                | WaitCode::MachineReleasing
                | WaitCode::MachineReady
                | WaitCode::StartPending
        )
    }
}

/// Why one ticket waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub code: WaitCode,
    /// One sentence naming the pool, tag or limit involved.
    pub text: String,
    pub pool: Option<String>,
    pub tag: Option<String>,
    /// When the condition ends by itself, if known (a reuse window, a start delay).
    pub until: Option<Ms>,
}

impl Waiting {
    fn new(code: WaitCode, text: String) -> Waiting {
        Waiting {
            code,
            text,
            pool: None,
            tag: None,
            until: None,
        }
    }

    fn pool(mut self, pool: &str) -> Waiting {
        self.pool = Some(pool.to_string());
        self
    }
}

fn secs(s: u32) -> Ms {
    Ms::from(s) * 1000
}

/// A duration for a sentence: "45 s", "3 min", "2 h 5 min".
pub fn duration_text(ms: Ms) -> String {
    let s = (ms.max(0) + 500) / 1000;
    if s < 90 {
        format!("{s} s")
    } else if s < 5400 {
        format!("{} min", (s + 30) / 60)
    } else {
        let m = (s + 30) / 60;
        format!("{} h {} min", m / 60, m % 60)
    }
}

fn tag_list(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Explains every waiting ticket of the world.
pub fn explain_all(world: &World, facts: &Facts, now: Ms) -> BTreeMap<i64, Waiting> {
    Explainer::new(world, facts, now).run()
}

struct Explainer<'w> {
    world: &'w World,
    facts: &'w Facts,
    now: Ms,
    on_demand: BTreeSet<String>,
    /// Per pool: machines that could serve a waiting ticket, not yet claimed by one ahead.
    ready: BTreeMap<&'w str, Vec<i64>>,
    releasing: BTreeMap<&'w str, Vec<i64>>,
    starting: BTreeMap<&'w str, Vec<i64>>,
    /// Machines kept for a sandbox's reuse: (pool, sandbox) → ids.
    reserved: BTreeMap<(&'w str, &'w str), Vec<i64>>,
    /// Starts each pool would make at the next pass for tickets ahead.
    planned: BTreeMap<&'w str, u32>,
}

impl<'w> Explainer<'w> {
    fn new(world: &'w World, facts: &'w Facts, now: Ms) -> Explainer<'w> {
        let mut e = Explainer {
            world,
            facts,
            now,
            on_demand: on_demand_tags(world),
            ready: BTreeMap::new(),
            releasing: BTreeMap::new(),
            starting: BTreeMap::new(),
            reserved: BTreeMap::new(),
            planned: BTreeMap::new(),
        };
        for r in world.resources.values() {
            let serving = match r.state {
                RState::Starting => true,
                RState::Up => r.ticket.is_none() && r.check_failed == 0,
                RState::Releasing => true,
                _ => false,
            };
            if !serving {
                continue;
            }
            if let Some(s) = &r.sandbox {
                e.reserved.entry((&r.pool, s)).or_default().push(r.id);
                continue;
            }
            let list = match r.state {
                RState::Starting => &mut e.starting,
                RState::Releasing => &mut e.releasing,
                _ => &mut e.ready,
            };
            list.entry(&r.pool).or_default().push(r.id);
        }
        e
    }

    fn run(mut self) -> BTreeMap<i64, Waiting> {
        let mut out = BTreeMap::new();
        for id in waiting_order(self.world) {
            let ticket = &self.world.tickets[&id];
            out.insert(id, self.explain(ticket));
        }
        out
    }

    /// Pools that could serve the ticket, best first (priority, then name).
    fn capable(&self, ticket: &Ticket) -> Vec<&'w Pool> {
        let mut pools: Vec<(i64, &Pool)> = self
            .world
            .pools
            .values()
            .filter_map(|p| p.config.serves(&ticket.tags).map(|s| (s, p)))
            .collect();
        pools.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.config.name.cmp(&b.1.config.name))
        });
        pools.into_iter().map(|(_, p)| p).collect()
    }

    fn explain(&mut self, ticket: &'w Ticket) -> Waiting {
        // A ready machine that takes it is assigned at the next pass, whatever the pools'
        // definitions say now (a machine keeps the tags it came up with).
        if let Some(w) = self.claim_ready(ticket) {
            return w;
        }
        let capable = self.capable(ticket);
        if capable.is_empty() {
            return self.nobody_offers(ticket);
        }
        let serving: Vec<&Pool> = capable
            .iter()
            .copied()
            .filter(|p| !p.config.is_winding_down())
            .collect();
        if serving.is_empty() {
            let p = &capable[0].config;
            return Waiting::new(
                WaitCode::PoolDraining,
                format!(
                    "Pool {} could serve it but is {}: it starts no machines; an admin can resume it.",
                    p.name, p.state
                ),
            )
            .pool(&p.name);
        }
        if let Some(w) = self.claim_existing(ticket, &serving) {
            return w;
        }
        // Nothing exists for it: the first pool able to start one plans a start, as the core
        // plans it (a start delay postpones that start, it does not move it elsewhere);
        // otherwise the best pool's limit is the reason.
        let is_on_demand = ticket.tags.iter().any(|t| self.on_demand.contains(t));
        let mut reasons = Vec::new();
        for pool in &serving {
            match self.start_blocker(pool, is_on_demand) {
                None => {
                    *self.planned.entry(&pool.config.name).or_default() += 1;
                    return self.delayed(pool).unwrap_or_else(|| {
                        Waiting::new(
                            WaitCode::StartPending,
                            format!(
                                "Pool {} starts a machine for it at the next pass{}.",
                                pool.config.name,
                                self.average_text(&pool.config.name)
                            ),
                        )
                        .pool(&pool.config.name)
                    });
                }
                Some(w) => reasons.push(w),
            }
        }
        let mut first = reasons.remove(0);
        if !reasons.is_empty() {
            let _ = write!(
                first.text,
                " {} other pool{} could serve it and {} limited too.",
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" },
                if reasons.len() == 1 { "is" } else { "are" }
            );
        }
        first
    }

    /// No pool (in any state) serves these tags: say which tag or which combination is missing.
    fn nobody_offers(&self, ticket: &Ticket) -> Waiting {
        let pools: Vec<&PoolConfig> = self
            .world
            .pools
            .values()
            .map(|p| &p.config)
            .filter(|p| p.state != PoolState::Retired)
            .collect();
        let offers = |p: &PoolConfig, tag: &str| p.all_tags().any(|t| t.name == tag);
        if let Some(tag) = ticket
            .tags
            .iter()
            .find(|tag| !pools.iter().any(|p| offers(p, tag)))
        {
            let mut w = Waiting::new(
                WaitCode::NoPoolOffersTag,
                format!(
                    "No pool offers the tag `{tag}`, so this build waits until an admin adds a pool with it or the build is cancelled."
                ),
            );
            w.tag = Some(tag.clone());
            return w;
        }
        if let Some(p) = pools
            .iter()
            .find(|p| p.tags_priority(&ticket.tags).is_some())
        {
            let missing: Vec<String> = p
                .tags_required
                .iter()
                .filter(|t| !ticket.tags.contains(t))
                .cloned()
                .collect();
            let mut w = Waiting::new(
                WaitCode::PoolDedicated,
                format!(
                    "Pool {} offers these tags but serves only builds tagged {}; no other pool offers {}.",
                    p.name,
                    tag_list(&missing),
                    tag_list(&ticket.tags)
                ),
            )
            .pool(&p.name);
            w.tag = missing.into_iter().next();
            return w;
        }
        Waiting::new(
            WaitCode::NoPoolOffersAllTags,
            format!(
                "Every tag is offered by some pool, but no single pool offers all of {}.",
                tag_list(&ticket.tags)
            ),
        )
    }

    /// A machine that exists and will serve this ticket before any other: its sandbox's own,
    /// a ready one, one being released, one starting. Claims it, so tickets behind this one
    /// do not count it again.
    fn claim_ready(&mut self, ticket: &'w Ticket) -> Option<Waiting> {
        let (id, reused) = self.best_ready(ticket)?;
        for ids in self.ready.values_mut().chain(self.reserved.values_mut()) {
            ids.retain(|&x| x != id);
        }
        let pool = &self.world.resources[&id].pool;
        Some(self.existing(id, pool, reused))
    }

    /// A machine on its way that will serve it (being released, or starting).
    fn claim_existing(&mut self, ticket: &'w Ticket, serving: &[&'w Pool]) -> Option<Waiting> {
        if let Some(sandbox) = ticket.sandbox.as_deref() {
            let mut by_name: Vec<&str> = serving.iter().map(|p| p.config.name.as_str()).collect();
            by_name.sort_unstable();
            for name in by_name {
                let world = self.world;
                let Some(ids) = self.reserved.get_mut(&(name, sandbox)) else {
                    continue;
                };
                let Some(at) = ids.iter().position(|id| !world.resources[id].is_ready()) else {
                    continue;
                };
                let id = ids.remove(at);
                return Some(self.existing(id, name, true));
            }
        }
        // Like the core's plan: the first pool (by name) with a machine for it, preferring
        // one being released to one starting.
        let mut by_name: Vec<&str> = serving.iter().map(|p| p.config.name.as_str()).collect();
        by_name.sort_unstable();
        for name in by_name {
            let claimed = [&mut self.releasing, &mut self.starting]
                .into_iter()
                .find_map(|map| {
                    map.get_mut(name)
                        .filter(|ids| !ids.is_empty())
                        .map(|ids| ids.remove(0))
                });
            if let Some(id) = claimed {
                return Some(self.existing(id, name, false));
            }
        }
        None
    }

    /// The ready machine the next pass gives this ticket, picked as the core picks: by the
    /// machine's own tags (copied from its pool when it came up) and its pool's required tags,
    /// its sandbox's machines first, then the best score, then the lowest id.
    fn best_ready(&self, ticket: &Ticket) -> Option<(i64, bool)> {
        let free = self.ready.values().flatten().map(|id| (*id, false));
        let own = ticket.sandbox.as_deref().into_iter().flat_map(|s| {
            self.reserved
                .iter()
                .filter(move |((_, sandbox), _)| *sandbox == s)
                .flat_map(|(_, ids)| ids.iter().map(|id| (*id, true)))
        });
        let mut best: Option<(i64, i64, bool)> = None;
        for (id, reused) in free.chain(own) {
            let r = &self.world.resources[&id];
            if !r.is_ready() {
                continue;
            }
            let Some(pool) = self
                .world
                .pools
                .get(&r.pool)
                .filter(|p| !p.config.is_winding_down())
            else {
                continue;
            };
            if !pool
                .config
                .tags_required
                .iter()
                .all(|t| ticket.tags.contains(t))
            {
                continue;
            }
            let Some(score) = score(r.tags.iter(), &ticket.tags) else {
                continue;
            };
            let score = score + if reused { REUSE_BONUS } else { 0 };
            if best.is_none_or(|(s, i, _)| score > s || (score == s && id < i)) {
                best = Some((score, id, reused));
            }
        }
        best.map(|(_, id, reused)| (id, reused))
    }

    fn existing(&self, id: i64, pool: &str, reused: bool) -> Waiting {
        let r = &self.world.resources[&id];
        let label = if r.name.is_empty() {
            format!("machine {id}")
        } else {
            format!("machine {} (id {id})", r.name)
        };
        let own = if reused {
            " it already used for this sandbox"
        } else {
            ""
        };
        let (code, text) = match r.state {
            RState::Starting => {
                let age = self
                    .facts
                    .started_at
                    .get(&id)
                    .map(|t| format!(", booting for {}", duration_text(self.now - t)))
                    .unwrap_or_default();
                (
                    WaitCode::MachineStarting,
                    format!(
                        "Pool {pool} is starting {label} for it{age}{}.",
                        self.average_text(pool)
                    ),
                )
            }
            RState::Releasing => (
                WaitCode::MachineReleasing,
                format!(
                    "Pool {pool} is cleaning up {label}{own} (cmd_release); it serves this build next."
                ),
            ),
            _ => (
                WaitCode::MachineReady,
                format!("Pool {pool} has {label}{own} ready; the next pass assigns it."),
            ),
        };
        Waiting::new(code, text).pool(pool)
    }

    fn average_text(&self, pool: &str) -> String {
        self.facts
            .start_time_avg
            .get(pool)
            .map(|avg| {
                format!(
                    " (its machines take {} to start on average)",
                    duration_text((avg * 1000.0) as Ms)
                )
            })
            .unwrap_or_default()
    }

    /// Why `pool` would not start a machine for a ticket now, or None if it would.
    fn start_blocker(&self, pool: &Pool, is_on_demand: bool) -> Option<Waiting> {
        let p = &pool.config;
        let name = p.name.as_str();
        if p.state == PoolState::Paused {
            return Some(
                Waiting::new(
                    WaitCode::PoolPaused,
                    format!(
                        "Pool {name} is paused: it starts no machines until an admin resumes it."
                    ),
                )
                .pool(name),
            );
        }
        if pool.over_cap() {
            let cap = p.monthly_cap.unwrap_or_default();
            return Some(
                Waiting::new(
                    WaitCode::PoolOverCap,
                    format!(
                        "Pool {name} has spent {:.2} of its monthly cap of {cap:.2}: it starts no machines until next month or until the cap is raised.",
                        pool.runtime.month_cost
                    ),
                )
                .pool(name),
            );
        }
        let planned = self.planned.get(name).copied().unwrap_or(0);
        let mine = || self.world.resources.values().filter(|r| r.pool == name);
        let on = mine().count() as u32 + planned;
        if on >= p.max {
            // A machine kept for another sandbox's reuse is what holds the place, if any.
            let held = mine()
                .filter(|r| r.state == RState::Up && r.ticket.is_none() && r.sandbox.is_some())
                .filter_map(|r| {
                    let until = r.released_at? + secs(p.reuse_opportunity_time);
                    Some((until, r))
                })
                .min_by_key(|(until, _)| *until);
            if let Some((until, r)) = held {
                let mut w = Waiting::new(
                    WaitCode::HeldForReuse,
                    format!(
                        "Pool {name} is at its max of {} machines; {} is held for sandbox {}'s reuse for {} more.",
                        p.max,
                        if r.name.is_empty() { format!("machine {}", r.id) } else { r.name.clone() },
                        r.sandbox.as_deref().unwrap_or_default(),
                        duration_text(until - self.now)
                    ),
                )
                .pool(name);
                w.until = Some(until);
                return Some(w);
            }
            return Some(
                Waiting::new(
                    WaitCode::PoolAtMax,
                    format!(
                        "Pool {name} is at its max of {} machines, all busy; the build gets one when a machine is released.",
                        p.max
                    ),
                )
                .pool(name),
            );
        }
        let starting = mine().filter(|r| r.state == RState::Starting).count() as u32 + planned;
        if starting >= p.max_starting {
            return Some(
                Waiting::new(
                    WaitCode::PoolAtMaxStarting,
                    format!(
                        "Pool {name} is already starting {starting} machine{} for builds ahead of this one, its max_starting.",
                        if starting == 1 { "" } else { "s" }
                    ),
                )
                .pool(name),
            );
        }
        let startable = if is_on_demand {
            p.is_on_demand()
        } else {
            p.start_on_waiting && !p.is_on_demand()
        };
        if !startable {
            let text = if p.is_on_demand() {
                let tags: Vec<String> = p.tags_on_demand.iter().map(|t| t.name.clone()).collect();
                format!(
                    "Pool {name} starts machines only for builds tagged {}; this build waits for one of its machines to be free.",
                    tag_list(&tags)
                )
            } else {
                format!(
                    "Pool {name} keeps {} machine{} ready in advance and starts more only as those are taken; builds ahead of this one take them first.",
                    p.effective_prealloc(),
                    if p.effective_prealloc() == 1 { "" } else { "s" }
                )
            };
            return Some(Waiting::new(WaitCode::PoolPreallocTaken, text).pool(name));
        }
        None
    }

    /// The pool's `start_delay` postpones the start planned for the ticket.
    fn delayed(&self, pool: &Pool) -> Option<Waiting> {
        let p = &pool.config;
        let name = p.name.as_str();
        // One start per delay: the tickets planned before this one in the pool take the
        // starts before its own.
        let ahead = Ms::from(
            self.planned
                .get(name)
                .copied()
                .unwrap_or(1)
                .saturating_sub(1),
        );
        if p.start_delay > 0 {
            let first = pool
                .runtime
                .last_start
                .map_or(self.now, |last| (last + secs(p.start_delay)).max(self.now));
            let next = first + ahead * secs(p.start_delay);
            if next > self.now {
                let mut w = Waiting::new(
                    WaitCode::PoolStartDelay,
                    format!(
                        "Pool {name} starts one machine every {} (start_delay); its next start is in {}.",
                        duration_text(secs(p.start_delay)),
                        duration_text(next - self.now)
                    ),
                )
                .pool(name);
                w.until = Some(next);
                return Some(w);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Ms = 1_800_000_000_000;

    fn pool(name: &str, tags: &[&str], on_demand: &[&str]) -> Pool {
        let mut config = PoolConfig::new(name, "true", "true");
        config.tags = tags.iter().map(|t| Tag::new(*t, 0)).collect();
        config.tags_on_demand = on_demand.iter().map(|t| Tag::new(*t, 0)).collect();
        Pool {
            config,
            runtime: PoolRuntime::default(),
        }
    }

    fn world(pools: Vec<Pool>) -> World {
        World {
            pools: pools
                .into_iter()
                .map(|p| (p.config.name.clone(), p))
                .collect(),
            ..World::default()
        }
    }

    fn ticket(world: &mut World, id: i64, tags: &[&str], sandbox: Option<&str>) {
        let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        tags.sort();
        world.tickets.insert(
            id,
            Ticket {
                id,
                state: TState::Open,
                tags,
                sandbox: sandbox.map(String::from),
                resource: None,
            },
        );
    }

    fn machine<'a>(world: &'a mut World, id: i64, pool: &str, state: RState) -> &'a mut Resource {
        let mut r = Resource::starting(id, pool, format!("{pool}-{id}"), id as u32, Vec::new());
        r.state = state;
        if state != RState::Starting {
            // A machine that came up carries its pool's tags as they were then.
            r.tags = world
                .pools
                .get(pool)
                .map(|p| p.config.all_tags().cloned().collect())
                .unwrap_or_default();
        }
        world.resources.insert(id, r);
        world.resources.get_mut(&id).unwrap()
    }

    fn why(world: &World, facts: &Facts, id: i64) -> Waiting {
        explain_all(world, facts, NOW).remove(&id).expect("waiting")
    }

    #[test]
    fn a_tag_no_pool_offers_is_named() {
        let mut w = world(vec![pool("x86", &["copr_builder", "arch_x86_64"], &[])]);
        ticket(&mut w, 1, &["copr_builder", "arch_s390x"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::NoPoolOffersTag);
        assert_eq!(r.tag.as_deref(), Some("arch_s390x"));
        assert!(r.text.contains("`arch_s390x`"), "{}", r.text);
    }

    #[test]
    fn tags_offered_only_apart_say_so() {
        let mut w = world(vec![
            pool("x86", &["copr_builder", "arch_x86_64"], &[]),
            pool(
                "big",
                &["copr_builder", "arch_aarch64"],
                &["on_demand_powerful"],
            ),
        ]);
        ticket(
            &mut w,
            1,
            &["copr_builder", "arch_x86_64", "on_demand_powerful"],
            None,
        );
        assert_eq!(
            why(&w, &Facts::default(), 1).code,
            WaitCode::NoPoolOffersAllTags
        );
    }

    #[test]
    fn a_dedicated_pool_names_the_tag_it_requires() {
        let mut p = pool("llvm", &["copr_builder", "arch_x86_64", "team_llvm"], &[]);
        p.config.tags_required = vec!["team_llvm".into()];
        let mut w = world(vec![p]);
        ticket(&mut w, 1, &["copr_builder", "arch_x86_64"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::PoolDedicated);
        assert_eq!(r.pool.as_deref(), Some("llvm"));
        assert_eq!(r.tag.as_deref(), Some("team_llvm"));
    }

    #[test]
    fn paused_and_draining_pools() {
        let mut p = pool("x86", &["copr_builder"], &[]);
        p.config.state = PoolState::Paused;
        let mut w = world(vec![p]);
        ticket(&mut w, 1, &["copr_builder"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(
            (r.code, r.pool.as_deref()),
            (WaitCode::PoolPaused, Some("x86"))
        );

        w.pools.get_mut("x86").unwrap().config.state = PoolState::Draining;
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::PoolDraining);
        assert!(r.text.contains("draining"), "{}", r.text);
    }

    #[test]
    fn over_the_monthly_cap() {
        let mut p = pool("big", &["copr_builder"], &["on_demand_powerful"]);
        p.config.monthly_cap = Some(100.0);
        p.runtime.month_cost = 100.5;
        let mut w = world(vec![p]);
        ticket(&mut w, 1, &["copr_builder", "on_demand_powerful"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::PoolOverCap);
        assert!(
            r.text.contains("100.50") && r.text.contains("100.00"),
            "{}",
            r.text
        );
    }

    #[test]
    fn at_max_and_held_for_reuse() {
        let mut p = pool("big", &["copr_builder"], &["on_demand_powerful"]);
        p.config.max = 2;
        p.config.reuse_opportunity_time = 90;
        let mut w = world(vec![p]);
        machine(&mut w, 10, "big", RState::Up).ticket = Some(99);
        machine(&mut w, 11, "big", RState::Up).ticket = Some(98);
        ticket(&mut w, 1, &["copr_builder", "on_demand_powerful"], None);
        assert_eq!(why(&w, &Facts::default(), 1).code, WaitCode::PoolAtMax);

        // Machine 11 was released 30 s ago and is kept for its sandbox for 60 s more.
        let r = w.resources.get_mut(&11).unwrap();
        r.ticket = None;
        r.sandbox = Some("alice/proj--alice".into());
        r.released_at = Some(NOW - 30_000);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::HeldForReuse);
        assert_eq!(r.until, Some(NOW + 60_000));
        assert!(
            r.text.contains("alice/proj--alice") && r.text.contains("60 s"),
            "{}",
            r.text
        );

        // A ticket of that sandbox gets it.
        ticket(
            &mut w,
            2,
            &["copr_builder", "on_demand_powerful"],
            Some("alice/proj--alice"),
        );
        assert_eq!(why(&w, &Facts::default(), 2).code, WaitCode::MachineReady);
    }

    #[test]
    fn a_starting_machine_with_its_age_and_the_average() {
        let mut p = pool("big", &["copr_builder"], &["on_demand_powerful"]);
        p.config.max_starting = 1;
        let mut w = world(vec![p]);
        machine(&mut w, 10, "big", RState::Starting);
        ticket(&mut w, 1, &["copr_builder", "on_demand_powerful"], None);
        ticket(&mut w, 2, &["copr_builder", "on_demand_powerful"], None);
        let facts = Facts {
            started_at: BTreeMap::from([(10, NOW - 180_000)]),
            start_time_avg: BTreeMap::from([("big".to_string(), 240.0)]),
        };
        let all = explain_all(&w, &facts, NOW);
        assert_eq!(all[&1].code, WaitCode::MachineStarting);
        assert!(
            all[&1].text.contains("booting for 3 min") && all[&1].text.contains("4 min"),
            "{}",
            all[&1].text
        );
        // The second ticket is behind the first: the pool starts one at a time.
        assert_eq!(all[&2].code, WaitCode::PoolAtMaxStarting);
    }

    #[test]
    fn start_delay_gives_the_next_start() {
        let mut p = pool("big", &["copr_builder"], &["on_demand_powerful"]);
        p.config.start_delay = 120;
        p.runtime.last_start = Some(NOW - 20_000);
        let mut w = world(vec![p]);
        ticket(&mut w, 1, &["copr_builder", "on_demand_powerful"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::PoolStartDelay);
        assert_eq!(r.until, Some(NOW + 100_000));
    }

    #[test]
    fn preallocated_pools_refill_only() {
        let mut p = pool("x86", &["copr_builder"], &[]);
        p.config.max_prealloc = 1;
        let mut w = world(vec![p]);
        machine(&mut w, 10, "x86", RState::Up).ticket = Some(99);
        ticket(&mut w, 1, &["copr_builder"], None);
        assert_eq!(
            why(&w, &Facts::default(), 1).code,
            WaitCode::PoolPreallocTaken
        );

        w.pools.get_mut("x86").unwrap().config.start_on_waiting = true;
        assert_eq!(why(&w, &Facts::default(), 1).code, WaitCode::StartPending);
    }

    #[test]
    fn releasing_and_ready_machines_are_claimed_in_queue_order() {
        let mut w = world(vec![pool("x86", &["copr_builder"], &[])]);
        machine(&mut w, 10, "x86", RState::Up);
        machine(&mut w, 11, "x86", RState::Releasing);
        ticket(&mut w, 1, &["copr_builder"], None);
        ticket(&mut w, 2, &["copr_builder"], None);
        ticket(&mut w, 3, &["copr_builder"], None);
        let all = explain_all(&w, &Facts::default(), NOW);
        assert_eq!(all[&1].code, WaitCode::MachineReady);
        assert_eq!(all[&2].code, WaitCode::MachineReleasing);
        assert_eq!(all[&3].code, WaitCode::PoolPreallocTaken);
    }

    #[test]
    fn the_ready_machine_named_is_the_one_the_core_picks() {
        // Two pools serve the build; the one whose tags score higher gets it, whatever the
        // names' order.
        let a = pool("a-plain", &["copr_builder"], &[]);
        let mut b = pool("b-preferred", &["copr_builder"], &[]);
        b.config.tags = vec![Tag::new("copr_builder", 5)];
        let mut w = world(vec![a, b]);
        machine(&mut w, 10, "a-plain", RState::Up);
        machine(&mut w, 11, "b-preferred", RState::Up);
        ticket(&mut w, 1, &["copr_builder"], None);
        let told = why(&w, &Facts::default(), 1);
        assert_eq!(told.code, WaitCode::MachineReady);
        assert_eq!(told.pool.as_deref(), Some("b-preferred"), "{}", told.text);
        let mut run = w.clone();
        let out = crate::engine::core::pass(&mut run, NOW, &mut |t| format!("s{t}"));
        assert!(out.actions.iter().any(|a| matches!(
            a,
            crate::engine::core::Action::Assign {
                ticket: 1,
                resource: 11,
                ..
            }
        )));
    }

    #[test]
    fn a_machine_up_before_its_pool_gained_a_tag_does_not_serve_it() {
        let mut w = world(vec![pool("x86", &["copr_builder"], &[])]);
        machine(&mut w, 10, "x86", RState::Up);
        w.pools
            .get_mut("x86")
            .unwrap()
            .config
            .tags
            .push(Tag::new("arch_x86_64", 0));
        w.pools.get_mut("x86").unwrap().config.max = 1;
        ticket(&mut w, 1, &["arch_x86_64", "copr_builder"], None);
        let told = why(&w, &Facts::default(), 1);
        assert_ne!(told.code, WaitCode::MachineReady, "{}", told.text);
        let mut run = w.clone();
        let out = crate::engine::core::pass(&mut run, NOW, &mut |t| format!("s{t}"));
        assert!(
            !out.actions
                .iter()
                .any(|a| matches!(a, crate::engine::core::Action::Assign { .. }))
        );
    }

    #[test]
    fn several_limited_pools_are_counted() {
        let mut a = pool("a", &["copr_builder"], &["on_demand_powerful"]);
        a.config.state = PoolState::Paused;
        let mut b = pool("b", &["copr_builder"], &["on_demand_powerful"]);
        b.config.max = 0;
        let mut w = world(vec![a, b]);
        ticket(&mut w, 1, &["copr_builder", "on_demand_powerful"], None);
        let r = why(&w, &Facts::default(), 1);
        assert_eq!(r.code, WaitCode::PoolPaused);
        assert!(r.text.contains("1 other pool could serve it"), "{}", r.text);
    }

    #[test]
    fn every_code_is_distinct() {
        let codes = [
            WaitCode::NoPoolOffersTag,
            WaitCode::NoPoolOffersAllTags,
            WaitCode::PoolDedicated,
            WaitCode::PoolPaused,
            WaitCode::PoolDraining,
            WaitCode::PoolOverCap,
            WaitCode::PoolAtMax,
            WaitCode::HeldForReuse,
            WaitCode::PoolAtMaxStarting,
            WaitCode::PoolStartDelay,
            WaitCode::PoolPreallocTaken,
            WaitCode::MachineStarting,
            WaitCode::MachineReleasing,
            WaitCode::MachineReady,
            WaitCode::StartPending,
        ];
        let names: BTreeSet<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), codes.len());
    }
}

/// The explanation against the engine itself, on the simulated clock and cloud: whatever it
/// says about a ticket, the next pass does.
#[cfg(test)]
mod against_the_core {
    use proptest::prelude::*;

    use super::super::sim::Sim;
    use super::*;

    fn pools(max: u32, max_starting: u32, start_delay: u32, cap: bool) -> Vec<PoolConfig> {
        let mut big = PoolConfig::new("big", "true", "true");
        big.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
        big.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
        big.max = max;
        big.max_starting = max_starting;
        big.start_delay = start_delay;
        big.reuse_opportunity_time = 90;
        if cap {
            big.price_per_hour = Some(1.0);
            big.monthly_cap = Some(1.0);
        }
        let mut x86 = PoolConfig::new("x86", "true", "true");
        x86.tags = vec![Tag::new("copr_builder", 5), Tag::new("arch_x86_64", 0)];
        x86.max = max;
        x86.max_prealloc = 1;
        x86.max_starting = max_starting;
        x86.reuse_opportunity_time = 90;
        vec![big, x86]
    }

    const TAGS: [&[&str]; 3] = [
        &["copr_builder", "arch_x86_64"],
        &["copr_builder", "arch_x86_64", "on_demand_powerful"],
        &["copr_builder", "arch_s390x"],
    ];

    #[derive(Debug, Clone)]
    enum Step {
        Take(usize, u8),
        Close(u8),
        Advance(u16),
        Pause(bool),
        Spend(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..TAGS.len(), 0u8..4).prop_map(|(t, s)| Step::Take(t, s)),
            2 => any::<u8>().prop_map(Step::Close),
            3 => (100u16..4000).prop_map(Step::Advance),
            1 => any::<bool>().prop_map(Step::Pause),
            1 => any::<bool>().prop_map(Step::Spend),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn the_next_pass_does_what_the_explanation_says(
            max in 1u32..4,
            max_starting in 1u32..3,
            start_delay in prop_oneof![Just(0u32), Just(2u32)],
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let mut sim = Sim::new(pools(max, max_starting, start_delay, false));
            sim.boot_ms = 1_500;
            sim.settle(100, 10_000);
            for step in steps {
                match step {
                    Step::Take(t, s) => {
                        let sandbox = format!("owner/project{s}--user");
                        sim.take(TAGS[t], (s > 0).then_some(sandbox.as_str()));
                    }
                    Step::Close(n) => {
                        let open: Vec<i64> = sim.world.tickets.values()
                            .filter(|t| t.state == TState::Open).map(|t| t.id).collect();
                        if !open.is_empty() {
                            sim.close(open[n as usize % open.len()]);
                        }
                    }
                    Step::Advance(ms) => sim.advance(Ms::from(ms)),
                    Step::Pause(on) => {
                        sim.world.pools.get_mut("big").unwrap().config.state =
                            if on { PoolState::Paused } else { PoolState::Active };
                    }
                    Step::Spend(over) => {
                        let big = sim.world.pools.get_mut("big").unwrap();
                        big.config.monthly_cap = Some(10.0);
                        big.runtime.month_cost = if over { 10.0 } else { 0.0 };
                    }
                }
                // What the database holds between passes: outcomes applied, closed tickets
                // released. Explain that, then let the core decide from the same world.
                sim.pass();
                let why = explain_all(&sim.world, &Facts::default(), sim.now);
                let out = sim.pass();
                let assigned: BTreeSet<i64> = out.assigned_tickets().collect();
                let mut starts: BTreeMap<String, usize> = BTreeMap::new();
                for a in &out.actions {
                    if let super::super::core::Action::Start { pool, .. } = a {
                        *starts.entry(pool.clone()).or_default() += 1;
                    }
                }
                let mut pending: BTreeMap<String, usize> = BTreeMap::new();
                for (id, w) in &why {
                    match w.code {
                        WaitCode::MachineReady => prop_assert!(
                            assigned.contains(id), "ticket {id}: {w:?} but not assigned"),
                        WaitCode::StartPending => {
                            *pending.entry(w.pool.clone().unwrap()).or_default() += 1;
                        }
                        code if !code.is_progress() => prop_assert!(
                            !assigned.contains(id), "ticket {id}: {w:?} but assigned"),
                        _ => {}
                    }
                }
                // A pool that limits a ticket and promised no start starts nothing (an
                // on-demand pool starts only for tickets; a preallocated one may refill).
                for w in why.values() {
                    let limited = matches!(w.code, WaitCode::PoolAtMax | WaitCode::PoolAtMaxStarting
                        | WaitCode::PoolPaused | WaitCode::PoolOverCap | WaitCode::HeldForReuse);
                    let pool = w.pool.clone().unwrap_or_default();
                    let promised = why.values().any(|o| o.pool.as_deref() == Some(pool.as_str())
                        && matches!(o.code, WaitCode::StartPending | WaitCode::PoolStartDelay));
                    if limited && !promised && pool == "big" {
                        prop_assert!(!starts.contains_key(&pool),
                            "{w:?} but {pool} started {:?}; {why:?}", starts.get(&pool));
                    }
                }
                // Every start promised is made (a preallocated pool may start more: its refill).
                for (pool, n) in &pending {
                    prop_assert!(starts.get(pool).copied().unwrap_or(0) >= *n,
                        "{n} starts promised in {pool}, made {:?}; {why:?}", starts.get(pool));
                }
                // The on-demand pool starts exactly what was promised.
                prop_assert_eq!(starts.get("big").copied().unwrap_or(0),
                    pending.get("big").copied().unwrap_or(0), "{:?}", why);
            }
        }
    }

    #[test]
    fn a_build_s_wait_told_along_the_way() {
        let mut sim = Sim::new(pools(1, 1, 0, false));
        sim.boot_ms = 120_000;
        let first = sim.take(TAGS[1], Some("alice/proj--alice"));
        let second = sim.take(TAGS[1], Some("bob/proj--bob"));
        let why = |sim: &Sim, id: i64| {
            explain_all(&sim.world, &Facts::default(), sim.now)
                .remove(&id)
                .map(|w| w.code)
        };
        assert_eq!(why(&sim, first), Some(WaitCode::StartPending));
        assert_eq!(why(&sim, second), Some(WaitCode::PoolAtMax));
        sim.pass();
        assert_eq!(why(&sim, first), Some(WaitCode::MachineStarting));
        assert_eq!(why(&sim, second), Some(WaitCode::PoolAtMax));
        sim.advance(120_000);
        sim.pass();
        assert_eq!(why(&sim, first), None, "assigned");
        sim.close(first);
        sim.pass();
        // Released and kept for alice's sandbox: bob waits for the reuse window to end.
        assert_eq!(why(&sim, second), Some(WaitCode::HeldForReuse));
        sim.advance(91_000);
        sim.pass();
        sim.advance(200);
        sim.pass();
        assert_eq!(why(&sim, second), Some(WaitCode::MachineStarting));

        // Room for two machines, one boot at a time: the second build waits for the first's.
        let mut sim = Sim::new(pools(2, 1, 0, false));
        let first = sim.take(TAGS[1], None);
        let second = sim.take(TAGS[1], None);
        sim.pass();
        assert_eq!(why(&sim, first), Some(WaitCode::MachineStarting));
        assert_eq!(why(&sim, second), Some(WaitCode::PoolAtMaxStarting));
    }
}
