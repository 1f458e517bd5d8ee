//! Tests of the pure core on the simulated clock and cloud: resalloc's documented behaviour,
//! the fixes copr-pools adds, and properties over random schedules.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::core::{Action, render_name};
use super::model::*;
use super::sim::{Fate, Sim};

fn pool(name: &str, tags: &[(&str, i64)]) -> PoolConfig {
    let mut p = PoolConfig::new(name, "new", "delete");
    p.tags = tags.iter().map(|(n, prio)| Tag::new(*n, *prio)).collect();
    p
}

fn starts(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count()
}

fn up_count(sim: &Sim, pool: &str) -> usize {
    sim.world
        .resources
        .values()
        .filter(|r| r.pool == pool && r.state == RState::Up)
        .count()
}

#[test]
fn resallocs_documentation_example_picks_the_higher_priority_sum() {
    // A ticket asks for bar and baz. A offers foo=0, bar=1, baz=2 (3); B offers foo=10, bar=3,
    // baz=1 (4): B wins.
    let mut a = pool("a", &[("foo", 0), ("bar", 1), ("baz", 2)]);
    let mut b = pool("b", &[("foo", 10), ("bar", 3), ("baz", 1)]);
    a.max_prealloc = 1;
    b.max_prealloc = 1;
    let mut sim = Sim::new(vec![a, b]);
    sim.settle(1000, 60_000);
    assert_eq!(up_count(&sim, "a"), 1);
    assert_eq!(up_count(&sim, "b"), 1);
    let t = sim.take(&["bar", "baz"], Some("s"));
    sim.pass();
    let r = sim.machine_of(t).expect("assigned");
    assert_eq!(sim.world.resources[&r].pool, "b");
}

#[test]
fn ties_go_to_the_lowest_machine_id() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 3;
    p.max_starting = 3;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 60_000);
    let t = sim.take(&["x"], None);
    sim.pass();
    let lowest = *sim.world.resources.keys().next().unwrap();
    assert_eq!(sim.machine_of(t), Some(lowest));
}

#[test]
fn preallocation_respects_max_starting_and_max_prealloc() {
    let mut p = pool("p", &[("x", 0)]);
    p.max = 10;
    p.max_prealloc = 3;
    p.max_starting = 2;
    let mut sim = Sim::new(vec![p]);
    let first = sim.pass();
    assert_eq!(
        starts(&first.actions),
        2,
        "max_starting caps the first pass"
    );
    sim.advance(sim.boot_ms);
    let second = sim.pass();
    assert_eq!(starts(&second.actions), 1, "free + starting < max_prealloc");
    sim.settle(1000, 60_000);
    assert_eq!(up_count(&sim, "p"), 3);
    assert_eq!(starts(&sim.pass().actions), 0);
}

#[test]
fn start_delay_spaces_starts() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 3;
    p.max_starting = 3;
    p.start_delay = 60;
    let mut sim = Sim::new(vec![p]);
    assert_eq!(starts(&sim.pass().actions), 1);
    sim.advance(30_000);
    assert_eq!(starts(&sim.pass().actions), 0);
    sim.advance(30_000);
    let out = sim.pass();
    assert_eq!(starts(&out.actions), 1);
    assert_eq!(out.next_due, Some(sim.now + 60_000));
}

#[test]
fn a_released_machine_is_reused_by_its_sandbox_before_a_fresh_one() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.reuse_opportunity_time = 90;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 60_000);
    let t1 = sim.take(&["x"], Some("owner/proj--alice"));
    sim.pass();
    let used = sim.machine_of(t1).unwrap();
    sim.settle(1000, 10_000); // a fresh machine refills the preallocation
    sim.close(t1);
    sim.pass();
    let fresh = sim
        .world
        .resources
        .values()
        .find(|r| r.id != used && r.state == RState::Up)
        .unwrap()
        .id;
    assert!(fresh > used);

    // Another sandbox must not get the released machine; the same sandbox gets it (+500).
    let other = sim.take(&["x"], Some("owner/proj--bob"));
    let same = sim.take(&["x"], Some("owner/proj--alice"));
    sim.pass();
    assert_eq!(sim.machine_of(same), Some(used));
    assert_eq!(sim.machine_of(other), Some(fresh));
}

#[test]
fn the_reuse_bonus_is_worth_exactly_500() {
    for (fresh_priority, reused_wins) in [(499, true), (501, false)] {
        let mut cheap = pool("cheap", &[("x", 0)]);
        cheap.max_prealloc = 1;
        cheap.reuse_opportunity_time = 600;
        let mut pricey = pool("pricey", &[("x", fresh_priority)]);
        pricey.max_prealloc = 0;
        let mut sim = Sim::new(vec![cheap, pricey]);
        sim.settle(1000, 10_000);
        let t = sim.take(&["x"], Some("s"));
        sim.pass();
        let reused = sim.machine_of(t).unwrap();
        sim.close(t);
        sim.pass();
        // Now a fresh machine appears in the pricier pool.
        sim.world
            .pools
            .get_mut("pricey")
            .unwrap()
            .config
            .max_prealloc = 1;
        sim.settle(1000, 10_000);
        let t2 = sim.take(&["x"], Some("s"));
        sim.pass();
        assert_eq!(
            sim.machine_of(t2) == Some(reused),
            reused_wins,
            "fresh priority {fresh_priority}"
        );
    }
}

#[test]
fn reuse_windows_and_limits_delete_released_machines() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.reuse_opportunity_time = 90;
    p.reuse_max_count = 2;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 60_000);
    let machine = {
        let t = sim.take(&["x"], Some("s"));
        sim.pass();
        sim.machine_of(t).unwrap()
    };
    // Reused twice, then the third release exceeds reuse_max_count.
    for round in 0..3 {
        let t = sim.world.resources[&machine].ticket.unwrap();
        sim.close(t);
        sim.pass();
        if round < 2 {
            let t = sim.take(&["x"], Some("s"));
            sim.pass();
            assert_eq!(sim.machine_of(t), Some(machine), "round {round}");
        }
    }
    assert_eq!(sim.world.resources[&machine].state, RState::Deleting);
    assert!(sim.log.iter().any(|a| matches!(a, Action::RequestDelete { resource, reason: DeleteReason::ReuseMaxCount, .. } if *resource == machine)));

    // A machine nobody reuses goes after reuse_opportunity_time.
    sim.settle(1000, 20_000);
    let t = sim.take(&["x"], Some("other"));
    sim.pass();
    let m2 = sim.machine_of(t).unwrap();
    sim.close(t);
    sim.pass();
    sim.advance(90_000);
    sim.pass();
    assert_eq!(
        sim.world.resources[&m2].state,
        RState::Up,
        "exactly at the window it still waits"
    );
    sim.advance(1);
    sim.pass();
    assert_eq!(sim.world.resources[&m2].state, RState::Deleting);
}

#[test]
fn reuse_off_deletes_right_after_release() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 60_000);
    let t = sim.take(&["x"], None);
    sim.pass();
    let m = sim.machine_of(t).unwrap();
    assert!(
        sim.world.resources[&m]
            .sandbox
            .as_deref()
            .unwrap()
            .starts_with("random-"),
        "unsandboxed tickets get a private sandbox"
    );
    sim.close(t);
    sim.pass();
    assert_eq!(sim.world.resources[&m].state, RState::Deleting);
}

#[test]
fn cmd_release_runs_and_its_failure_deletes_the_machine() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.reuse_opportunity_time = 90;
    p.cmd_release = Some("release".into());
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 60_000);
    let t = sim.take(&["x"], Some("s"));
    sim.pass();
    let m = sim.machine_of(t).unwrap();
    sim.close(t);
    sim.pass();
    assert_eq!(sim.world.resources[&m].state, RState::Releasing);
    sim.advance(sim.hook_ms);
    sim.pass();
    assert_eq!(sim.world.resources[&m].state, RState::Up);

    sim.fate = Box::new(|kind, _| {
        if kind == HookKind::Release {
            Fate::Fail
        } else {
            Fate::Ok
        }
    });
    let t = sim.take(&["x"], Some("s"));
    sim.pass();
    assert_eq!(sim.machine_of(t), Some(m));
    sim.close(t);
    sim.pass();
    sim.advance(sim.hook_ms);
    sim.pass();
    assert!(matches!(
        sim.world.resources[&m].state,
        RState::DeleteRequest | RState::Deleting
    ));
}

#[test]
fn on_demand_tickets_start_one_machine_each_and_surplus_goes() {
    let mut p = pool("powerful", &[("copr_builder", -40), ("arch_x86_64", 0)]);
    p.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
    p.max = 5;
    p.max_starting = 4;
    p.max_prealloc = 0;
    let normal = pool("normal", &[("copr_builder", 0), ("arch_x86_64", 0)]);
    let mut sim = Sim::new(vec![p, normal]);
    let out = sim.pass();
    assert_eq!(
        starts(&out.actions),
        1,
        "only the normal pool preallocates, one at a time"
    );

    let t1 = sim.take(
        &["arch_x86_64", "copr_builder", "on_demand_powerful"],
        Some("a"),
    );
    let t2 = sim.take(
        &["arch_x86_64", "copr_builder", "on_demand_powerful"],
        Some("b"),
    );
    let out = sim.pass();
    let powerful_starts = out
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Start { pool, .. } if pool == "powerful"))
        .count();
    assert_eq!(powerful_starts, 2);
    // The next pass must not start more for the same tickets.
    sim.advance(100);
    let again = sim.pass();
    assert_eq!(
        again
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Start { pool, .. } if pool == "powerful"))
            .count(),
        0
    );

    // t2 gives up before its machine is up: one machine is surplus and goes.
    sim.close(t2);
    sim.advance(sim.boot_ms);
    sim.pass();
    let t1_machine = sim.machine_of(t1).expect("t1 served");
    assert_eq!(sim.world.resources[&t1_machine].pool, "powerful");
    assert!(sim.log.iter().any(|a| matches!(
        a,
        Action::RequestDelete {
            reason: DeleteReason::OnDemandSurplus,
            ..
        }
    )));
}

#[test]
fn on_demand_tickets_do_not_wait_behind_machines_reserved_for_other_sandboxes() {
    // resalloc counts a released machine kept for sandbox A's reuse as capacity and starts
    // nothing for sandbox B's on-demand ticket, which then waits for the reuse window.
    let mut p = pool("powerful", &[("copr_builder", 0)]);
    p.tags_on_demand = vec![Tag::new("big", 0)];
    p.max = 4;
    p.max_starting = 2;
    p.reuse_opportunity_time = 600;
    let mut sim = Sim::new(vec![p]);
    let ta = sim.take(&["big", "copr_builder"], Some("A"));
    sim.settle(500, 10_000);
    let ma = sim.machine_of(ta).unwrap();
    sim.close(ta);
    sim.pass();
    assert_eq!(
        sim.world.resources[&ma].state,
        RState::Up,
        "kept for A's reuse"
    );

    let tb = sim.take(&["big", "copr_builder"], Some("B"));
    let out = sim.pass();
    assert_eq!(
        starts(&out.actions),
        1,
        "B gets its own machine started at once"
    );
    sim.advance(sim.boot_ms);
    sim.pass();
    let mb = sim.machine_of(tb).unwrap();
    assert_ne!(mb, ma);
}

#[test]
fn waiting_tickets_may_start_machines_in_opted_in_pools() {
    let mut p = pool("p", &[("x", 0)]);
    p.max = 3;
    p.max_starting = 3;
    p.max_prealloc = 0;
    let mut opted = p.clone();
    opted.name = "q".into();
    opted.tags = vec![Tag::new("y", 0)];
    opted.start_on_waiting = true;
    let mut sim = Sim::new(vec![p, opted]);
    sim.take(&["x"], None);
    sim.take(&["y"], None);
    sim.take(&["y"], None);
    let out = sim.pass();
    let q_starts = out
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Start { pool, .. } if pool == "q"))
        .count();
    assert_eq!(
        q_starts, 2,
        "one start per waiting ticket in the opted-in pool"
    );
    assert_eq!(
        starts(&out.actions),
        2,
        "the resalloc-compatible pool starts nothing"
    );
}

#[test]
fn failing_livechecks_kill_the_machine_and_fail_its_ticket() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.cmd_livecheck = Some("check".into());
    p.livecheck_period = 60;
    p.livecheck_attempts = 3;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    let t = sim.take(&["x"], Some("s"));
    sim.pass();
    let m = sim.machine_of(t).unwrap();
    sim.fate = Box::new(move |kind, r| {
        if kind == HookKind::Livecheck && r == m {
            Fate::Fail
        } else {
            Fate::Ok
        }
    });
    for _ in 0..3 {
        sim.advance(60_000);
        sim.pass();
        sim.advance(sim.hook_ms);
        sim.pass();
    }
    assert_eq!(sim.world.tickets[&t].state, TState::Failed);
    assert!(matches!(
        sim.world.resources[&m].state,
        RState::Deleting | RState::DeleteRequest
    ));
}

#[test]
fn a_hung_start_times_out_and_its_machine_is_deleted() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.timeouts.new = 30;
    let mut sim = Sim::new(vec![p]);
    let mut first = true;
    sim.fate = Box::new(move |kind, _| {
        if kind == HookKind::New && first {
            first = false;
            Fate::Hang
        } else {
            Fate::Ok
        }
    });
    sim.settle(1000, 120_000);
    assert_eq!(up_count(&sim, "p"), 1, "a replacement came up");
    assert!(sim.log.iter().any(|a| matches!(
        a,
        Action::RequestDelete {
            reason: DeleteReason::StartTimedOut,
            ..
        }
    )));
    assert!(
        sim.leaked().is_empty(),
        "the hung machine was deleted: {:?}",
        sim.leaked()
    );
}

#[test]
fn draining_cancels_starts_deletes_idle_and_waits_for_taken() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 2;
    p.max_starting = 1;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    let t = sim.take(&["x"], Some("s"));
    sim.pass();
    let taken = sim.machine_of(t).unwrap();
    sim.pass(); // a replacement starts
    assert!(
        sim.world
            .resources
            .values()
            .any(|r| r.state == RState::Starting)
    );
    sim.world.pools.get_mut("p").unwrap().config.state = PoolState::Draining;
    sim.pass();
    assert!(
        sim.log
            .iter()
            .any(|a| matches!(a, Action::CancelHook { .. })),
        "the start is cancelled"
    );
    sim.settle(100, 5_000);
    assert_eq!(
        sim.world.resources.len(),
        1,
        "only the taken machine is left"
    );
    assert_eq!(sim.world.resources[&taken].ticket, Some(t));
    sim.close(t);
    sim.settle(100, 5_000);
    assert!(sim.world.resources.is_empty());
    assert!(sim.cloud.is_empty(), "nothing leaked: {:?}", sim.cloud);
}

#[test]
fn lowering_max_removes_idle_machines() {
    let mut p = pool("p", &[("x", 0)]);
    p.max = 4;
    p.max_prealloc = 4;
    p.max_starting = 4;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    assert_eq!(up_count(&sim, "p"), 4);
    sim.world.pools.get_mut("p").unwrap().config.max = 1;
    sim.world.pools.get_mut("p").unwrap().config.max_prealloc = 1;
    sim.settle(100, 5_000);
    assert_eq!(sim.world.resources.len(), 1);
}

#[test]
fn lowering_max_deletes_only_the_excess_while_deletes_run() {
    let mut p = pool("p", &[("x", 0)]);
    p.max = 10;
    p.max_prealloc = 10;
    p.max_starting = 10;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    assert_eq!(up_count(&sim, "p"), 10);
    sim.hook_ms = 60_000; // deletes take a minute
    sim.world.pools.get_mut("p").unwrap().config.max = 8;
    sim.world.pools.get_mut("p").unwrap().config.max_prealloc = 8;
    for _ in 0..5 {
        sim.pass();
        sim.advance(1000);
    }
    let deleting = sim
        .world
        .resources
        .values()
        .filter(|r| matches!(r.state, RState::DeleteRequest | RState::Deleting))
        .count();
    assert_eq!(
        deleting, 2,
        "passes during the deletes pick no more machines"
    );
    assert_eq!(up_count(&sim, "p"), 8);
}

#[test]
fn a_machine_whose_hook_was_lost_is_cleaned_up_without_a_restart() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    let mut sim = Sim::new(vec![p]);
    sim.pass();
    let id = *sim.world.resources.keys().next().unwrap();
    // The runner lost track of the start (say the commit's answer never came back).
    sim.world.busy.clear();
    sim.pass();
    assert!(sim.log.iter().any(|a| matches!(a, Action::RequestDelete { resource, reason: DeleteReason::Restart, .. } if *resource == id)));
}

#[test]
fn a_release_waits_for_a_running_livecheck() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    p.reuse_opportunity_time = 60;
    p.cmd_release = Some("release".into());
    p.cmd_livecheck = Some("check".into());
    p.livecheck_period = 30;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    let t = sim.take(&["x"], Some("s"));
    sim.pass();
    let m = sim.machine_of(t).unwrap();
    sim.advance(30_000);
    sim.pass(); // the livecheck starts
    assert_eq!(sim.world.busy.get(&m), Some(&HookKind::Livecheck));
    sim.close(t);
    sim.pass();
    assert_eq!(
        sim.world.resources[&m].state,
        RState::Up,
        "no release while the livecheck runs"
    );
    assert_eq!(sim.world.resources[&m].ticket, Some(t));
    sim.advance(sim.hook_ms);
    sim.pass();
    assert_eq!(
        sim.world.resources[&m].state,
        RState::Releasing,
        "released once the livecheck is done"
    );
}

#[test]
fn machines_of_a_pool_with_a_broken_definition_are_left_alone() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 1;
    let mut sim = Sim::new(vec![p]);
    sim.settle(1000, 10_000);
    let id = *sim.world.resources.keys().next().unwrap();
    sim.world.resources.get_mut(&id).unwrap().state = RState::DeleteRequest;
    sim.world.pools.clear(); // its definition no longer loads
    let out = sim.pass();
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, Action::Delete { .. })),
        "no command to run: {:?}",
        out.actions
    );
}

#[test]
fn restart_recovery_deletes_machines_caught_mid_hook() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 2;
    p.max_starting = 2;
    let mut sim = Sim::new(vec![p]);
    sim.pass();
    assert_eq!(
        sim.world
            .resources
            .values()
            .filter(|r| r.state == RState::Starting)
            .count(),
        2
    );
    sim.crash(false);
    assert!(
        sim.world
            .resources
            .values()
            .all(|r| r.state == RState::DeleteRequest)
    );
    sim.settle(500, 30_000);
    assert_eq!(up_count(&sim, "p"), 2, "replacements came up");
    assert!(sim.leaked().is_empty(), "{:?}", sim.leaked());
}

#[test]
fn unknown_machines_go_only_after_two_sightings_far_enough_apart() {
    let mut p = pool("p", &[("x", 0)]);
    p.max_prealloc = 0;
    p.cmd_list = Some("list".into());
    p.list_period = 600;
    p.unknown_min_age = 900;
    let mut sim = Sim::new(vec![p]);
    sim.cloud.insert("p_leaked_1".into());
    sim.pass(); // lists
    sim.advance(sim.hook_ms);
    sim.pass(); // first sighting
    assert!(sim.cloud.contains("p_leaked_1"));
    sim.advance(600_000);
    sim.pass(); // lists again after 600 s
    sim.advance(sim.hook_ms);
    sim.pass(); // seen twice, but only 600 s apart
    assert!(
        !sim.log
            .iter()
            .any(|a| matches!(a, Action::DeleteUnknown { .. }))
    );
    sim.advance(600_000);
    sim.pass();
    sim.advance(sim.hook_ms);
    sim.pass();
    assert!(
        sim.log
            .iter()
            .any(|a| matches!(a, Action::DeleteUnknown { name, .. } if name == "p_leaked_1"))
    );
    sim.advance(sim.hook_ms);
    sim.pass();
    assert!(sim.cloud.is_empty());
}

#[test]
fn ids_in_pool_and_named_counters_take_the_smallest_free_value() {
    let mut a = pool("a", &[("x", 0)]);
    a.max_prealloc = 2;
    a.max_starting = 2;
    a.named_counters = vec!["ip".into()];
    let mut b = a.clone();
    b.name = "b".into();
    let mut sim = Sim::new(vec![a, b]);
    sim.pass();
    let mut seen: Vec<(String, u32, u32)> = sim
        .world
        .resources
        .values()
        .map(|r| (r.pool.clone(), r.id_in_pool, r.counters[0].1))
        .collect();
    seen.sort();
    // ids restart per pool; the named counter is shared by all pools.
    assert_eq!(
        seen,
        vec![
            ("a".into(), 0, 0),
            ("a".into(), 1, 1),
            ("b".into(), 0, 2),
            ("b".into(), 1, 3)
        ]
    );
}

#[test]
fn on_demand_tickets_are_served_before_older_normal_ones() {
    let mut od = pool("od", &[("x", 0)]);
    od.tags_on_demand = vec![Tag::new("big", 0)];
    od.max = 1;
    let mut sim = Sim::new(vec![od]);
    let normal = sim.take(&["x"], Some("n"));
    let on_demand = sim.take(&["x", "big"], Some("o"));
    sim.settle(500, 10_000);
    assert!(sim.machine_of(on_demand).is_some());
    assert!(sim.machine_of(normal).is_none());
}

#[test]
fn names_follow_the_pattern() {
    let t = 1_702_861_145_000; // 2023-12-18 00:59:05 UTC
    assert_eq!(
        render_name(
            "{pool_name}_{id}_{datetime}",
            "aws_aarch64_spot_prod",
            268847,
            3,
            t
        ),
        "aws_aarch64_spot_prod_00268847_20231218_005905"
    );
    assert_eq!(
        render_name("{pool_name}-{id_in_pool}-{id}", "p", 1, 3, t),
        "p-3-00000001"
    );
}

#[test]
fn a_pass_over_a_large_backlog_assigns_every_ready_machine() {
    // 50 pools of 40 ready machines (a quarter kept for a sandbox's reuse), 10,000 waiting
    // tickets: the benchmark's world.
    let mut world = crate::bench::synthetic_world();
    let out = super::core::pass(&mut world, 1_000_000, &mut |t| format!("r{t}"));
    let assigned: Vec<i64> = out.assigned_tickets().collect();
    assert!(
        assigned.len() >= 1500,
        "every unused machine found a ticket: {}",
        assigned.len()
    );
    // Oldest first: the newest ticket served is far from the end of the queue.
    assert!(*assigned.iter().max().unwrap() < 10_000);
    // And what is left is left for a reason: no idle machine can serve any waiting ticket.
    let waiting: std::collections::BTreeSet<(Vec<String>, Option<String>)> = world
        .tickets
        .values()
        .filter(|t| t.is_waiting())
        .map(|t| (t.tags.clone(), t.sandbox.clone()))
        .collect();
    for r in world.resources.values().filter(|r| r.is_ready()) {
        for (tags, sandbox) in &waiting {
            let fits = super::model::score(r.tags.iter(), tags).is_some();
            let same_sandbox = r.sandbox.is_none() || r.sandbox == *sandbox;
            assert!(
                !(fits && same_sandbox),
                "machine {} idles while a ticket for {tags:?} {sandbox:?} waits",
                r.id
            );
        }
    }
    for r in world.resources.values().filter(|r| r.ticket.is_some()) {
        let t = &world.tickets[&r.ticket.unwrap()];
        assert_eq!(r.sandbox, t.sandbox, "a machine serves only its sandbox");
    }
}

#[test]
fn a_dedicated_pool_serves_only_tickets_with_its_team_tag_even_when_idle() {
    let mut team = pool(
        "team",
        &[("copr_builder", 0), ("arch_x86_64", 0), ("team_a", 0)],
    );
    team.tags_required = vec!["team_a".into()];
    team.max_prealloc = 1;
    let mut everyone = pool("everyone", &[("copr_builder", 0), ("arch_x86_64", 0)]);
    everyone.max_prealloc = 0;
    everyone.start_on_waiting = true;
    let mut sim = Sim::new(vec![team, everyone]);
    sim.settle(1000, 60_000);
    assert_eq!(up_count(&sim, "team"), 1, "the team's machine is ready");
    // Someone else's build: the team's machine is the only one ready, and it stays idle.
    let other = sim.take(&["copr_builder", "arch_x86_64"], Some("someone/p--u"));
    let out = sim.pass();
    assert_eq!(sim.machine_of(other), None);
    let started: Vec<&str> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { pool, .. } => Some(pool.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        ["everyone"],
        "the other build starts its own machine elsewhere"
    );
    sim.settle(1000, 60_000);
    let got = sim.machine_of(other).expect("served by the shared pool");
    assert_eq!(sim.world.resources[&got].pool, "everyone");
    // The team's build takes the team's machine.
    let mine = sim.take(&["copr_builder", "arch_x86_64", "team_a"], Some("@a/p--u"));
    sim.pass();
    let got = sim.machine_of(mine).expect("served at once");
    assert_eq!(sim.world.resources[&got].pool, "team");
}

#[test]
fn a_pool_past_its_monthly_cap_starts_nothing_not_even_its_preallocation() {
    let mut p = pool("capped", &[("copr_builder", 0)]);
    p.max_prealloc = 2;
    p.max_starting = 2;
    p.price_per_hour = Some(1.0);
    p.monthly_cap = Some(100.0);
    let mut sim = Sim::new(vec![p]);
    sim.world
        .pools
        .get_mut("capped")
        .unwrap()
        .runtime
        .month_cost = 100.0;
    assert_eq!(starts(&sim.pass().actions), 0, "cap reached");
    let t = sim.take(&["copr_builder"], None);
    assert_eq!(starts(&sim.pass().actions), 0);
    assert_eq!(sim.machine_of(t), None);
    // Next month the cost starts from nothing again.
    sim.world
        .pools
        .get_mut("capped")
        .unwrap()
        .runtime
        .month_cost = 0.0;
    assert_eq!(starts(&sim.pass().actions), 2);
}

// Random schedules: tickets with random tags and sandboxes come and go, hooks fail or hang,
// the server crashes; the invariants of `Sim::check_invariants` hold after every pass, every
// servable ticket is eventually served, and once drained the cloud is empty.
#[derive(Debug, Clone)]
enum Step {
    Take { tags: u8, sandbox: u8 },
    Close { nth: u8 },
    Advance { ms: u16 },
    Crash { delete_happened: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..7, 0u8..4).prop_map(|(tags, sandbox)| Step::Take { tags, sandbox }),
        3 => any::<u8>().prop_map(|nth| Step::Close { nth }),
        4 => (1u16..5000).prop_map(|ms| Step::Advance { ms }),
        1 => any::<bool>().prop_map(|delete_happened| Step::Crash { delete_happened }),
    ]
}

const TAG_SETS: [&[&str]; 7] = [
    &["copr_builder", "arch_x86_64"],
    &["copr_builder", "arch_aarch64"],
    &["copr_builder", "arch_x86_64", "on_demand_powerful"],
    &["copr_builder"],
    &["arch_x86_64"],
    &["copr_builder", "arch_x86_64", "hypervisor"],
    &["copr_builder", "arch_x86_64", "team_a"],
];

fn random_pools() -> Vec<PoolConfig> {
    let mut x86 = pool("x86", &[("copr_builder", 0), ("arch_x86_64", 0)]);
    x86.max = 4;
    x86.max_starting = 2;
    x86.max_prealloc = 2;
    x86.reuse_opportunity_time = 5;
    x86.reuse_max_count = 3;
    x86.cmd_release = Some("release".into());
    x86.cmd_livecheck = Some("check".into());
    x86.livecheck_period = 10;
    x86.timeouts.new = 20;
    let mut arm = pool("arm", &[("copr_builder", -1), ("arch_aarch64", 0)]);
    arm.max = 2;
    arm.max_prealloc = 0;
    arm.start_on_waiting = true;
    arm.cmd_list = Some("list".into());
    arm.list_period = 60;
    arm.unknown_min_age = 60;
    arm.timeouts.new = 20;
    let mut big = pool(
        "big",
        &[("copr_builder", -40), ("arch_x86_64", 0), ("hypervisor", 0)],
    );
    big.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
    big.max = 2;
    big.max_starting = 2;
    big.reuse_opportunity_time = 5;
    big.timeouts.new = 20;
    // A team's dedicated pool: its idle machines are the only ones offering what most
    // tickets ask for, yet only the team's tickets may have them.
    let mut team = pool(
        "team",
        &[("copr_builder", 5), ("arch_x86_64", 0), ("team_a", 0)],
    );
    team.tags_required = vec!["team_a".into()];
    team.max = 2;
    team.max_prealloc = 2;
    team.max_starting = 2;
    team.reuse_opportunity_time = 5;
    team.timeouts.new = 20;
    vec![x86, arm, big, team]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_keep_the_invariants(steps in prop::collection::vec(step(), 1..120), seed in any::<u64>()) {
        let mut sim = Sim::new(random_pools());
        let mut rng = seed;
        sim.fate = Box::new(move |kind, _| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let roll = (rng >> 33) % 100;
            match (kind, roll) {
                (HookKind::New, 0..=9) => Fate::Fail,
                (HookKind::New, 10..=14) => Fate::Hang,
                (HookKind::Livecheck, 0..=9) => Fate::Fail,
                (HookKind::Release, 0..=4) => Fate::Fail,
                (HookKind::Delete, 0..=2) => Fate::Hang,
                _ => Fate::Ok,
            }
        });
        let mut open: Vec<i64> = Vec::new();
        let crashed = steps.iter().any(|s| matches!(s, Step::Crash { .. }));
        for s in steps {
            match s {
                Step::Take { tags, sandbox } => {
                    let sb = (sandbox > 0).then(|| format!("owner/p--u{sandbox}"));
                    open.push(sim.take(TAG_SETS[tags as usize], sb.as_deref()));
                }
                Step::Close { nth } => {
                    if !open.is_empty() {
                        let t = open.remove(nth as usize % open.len());
                        sim.close(t);
                    }
                }
                Step::Advance { ms } => sim.advance(i64::from(ms)),
                Step::Crash { delete_happened } => sim.crash(delete_happened),
            }
            sim.pass();
        }

        // Every servable ticket still open is served eventually once failures stop and
        // builds finish: a served ticket closes a little later, as Copr's builds do.
        sim.fate = Box::new(|_, _| Fate::Ok);
        let mut served: BTreeSet<i64> = BTreeSet::new();
        for _ in 0..600 {
            sim.advance(500);
            sim.pass();
            let done: Vec<i64> = sim
                .world
                .tickets
                .values()
                .filter(|t| t.state == TState::Failed || (t.state == TState::Open && t.resource.is_some()))
                .map(|t| t.id)
                .collect();
            for t in done {
                if sim.world.tickets[&t].state == TState::Open {
                    served.insert(t);
                }
                open.retain(|o| *o != t);
                sim.close(t);
            }
        }
        for t in &open {
            let ticket = &sim.world.tickets[t];
            let needs_unstartable = ticket.tags.iter().any(|tag| tag == "hypervisor")
                && !ticket.tags.iter().any(|tag| tag == "on_demand_powerful");
            prop_assert!(needs_unstartable, "ticket {:?} was never served", ticket);
        }

        // Drain: close everything, wind every pool down; nothing may be left in the cloud.
        for t in open.drain(..) {
            sim.close(t);
        }
        for p in sim.world.pools.values_mut() {
            p.config.state = PoolState::Draining;
        }
        sim.settle(500, 600_000);
        // Leaked machines (hooks lost in a crash) are found by cmd_list where a pool has one;
        // give the listing two periods.
        for _ in 0..4 {
            sim.advance(61_000);
            sim.settle(500, 10_000);
        }
        prop_assert!(sim.world.resources.is_empty(), "machines left: {:?}", sim.world.resources.values().map(|r| (&r.name, r.state)).collect::<Vec<_>>());
        let leaked: Vec<String> = sim.cloud.iter().filter(|n| n.starts_with("arm")).cloned().collect();
        prop_assert!(leaked.is_empty(), "leaked in a listed pool: {:?}", leaked);
        let unlisted_leaks: Vec<String> = sim.cloud.iter().filter(|n| !n.starts_with("arm")).cloned().collect();
        prop_assert!(unlisted_leaks.is_empty(), "leaked: {:?}", unlisted_leaks);
        if !crashed {
            prop_assert!(sim.redeleted.is_empty(), "deleted twice without a crash: {:?}", sim.redeleted);
        }
    }
}
