//! `kill -9` of the real server at random moments under load: no ticket is lost, no machine
//! serves two tickets at once, and after draining nothing is left in the (fake) cloud.

use std::time::{Duration, Instant};

use copr_pools::bench::RpcClient;
use copr_pools::entities::tickets;
use dxr::Value;
use sea_orm::EntityTrait;

use crate::engine::assert_no_leak_no_double_delete;
use crate::support::{Server, TestDb, copr_pools, each_db, eventually, free_port, repo_root};

fn pools_yaml(state: &str) -> String {
    let root = repo_root();
    format!(
        "crashy:\n  state: {state}\n  max: 6\n  max_starting: 3\n  max_prealloc: 3\n  tags: [copr_builder, arch_x86_64]\n  \
         cmd_new: {root}/fake-cloud/fake-new\n  cmd_delete: {root}/fake-cloud/fake-delete\n  cmd_release: {root}/fake-cloud/fake-release\n  \
         reuse_opportunity_time: 2\n  reuse_max_count: 4\n  timeout_new: 20\n",
        root = root.display()
    )
}

fn import(t: &TestDb, env: &[(String, String)], state: &str) {
    let file = t.dir.path().join("pools.yaml");
    std::fs::write(&file, pools_yaml(state)).unwrap();
    let out = copr_pools(t, env)
        .args(["pools", "import"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_and_leaks_nothing() {
    each_db(|t| async move {
        let (web, rpc) = (free_port(), free_port());
        let env = vec![
            ("COPR_POOLS_LISTEN".to_string(), format!("127.0.0.1:{web}")),
            (
                "COPR_POOLS_XMLRPC_LISTEN".to_string(),
                format!("127.0.0.1:{rpc}"),
            ),
            (
                "FAKE_CLOUD_DIR".to_string(),
                t.dir.path().join("cloud").display().to_string(),
            ),
            ("FAKE_CLOUD_BOOT_DELAY".to_string(), "0.3".to_string()),
            ("FAKE_CLOUD_FAIL_RATE".to_string(), "0.1".to_string()),
            // Hooks get only what the operator passes through.
            (
                "COPR_POOLS_HOOK_ENV_PASSTHROUGH".to_string(),
                "FAKE_CLOUD_*".to_string(),
            ),
        ];
        import(&t, &env, "active");
        let client = RpcClient::new(&format!("http://127.0.0.1:{rpc}/RPC2"));
        let mut taken: Vec<i32> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;

        for round in 0..5 {
            let server = Server::start(&t, &env, &client).await;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let run_for = Duration::from_millis(400 + seed % 1600);
            let start = Instant::now();
            let mut clients = Vec::new();
            for i in 0..6 {
                let c = client.clone();
                clients.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while start.elapsed() < run_for {
                        let Ok(id) = c
                            .take(
                                &["arch_x86_64", "copr_builder"],
                                &format!("@t/p--r{round}c{i}"),
                            )
                            .await
                        else {
                            break;
                        };
                        mine.push(id);
                        let wait = c.call("waitTicket", vec![Value::Integer(id)]);
                        if tokio::time::timeout(Duration::from_millis(800), wait)
                            .await
                            .is_err()
                        {
                            continue;
                        }
                        let _ = c.call("closeTicket", vec![Value::Integer(id)]).await;
                    }
                    mine
                }));
            }
            tokio::time::sleep(run_for).await;
            server.kill9();
            for c in clients {
                taken.extend(c.await.unwrap());
            }
        }

        // Restart, close every ticket, drain the pool and let the engine clean up.
        let server = Server::start(&t, &env, &client).await;
        let all = tickets::Entity::find().all(&t.db).await.unwrap();
        for id in &taken {
            assert!(
                all.iter().any(|row| row.id == *id),
                "ticket {id} was acknowledged, then lost"
            );
        }
        assert_no_overlapping_assignments(&all);
        for row in &all {
            client
                .call("closeTicket", vec![Value::Integer(row.id)])
                .await
                .unwrap();
        }
        import(&t, &env, "draining");
        let t2 = t.clone();
        eventually(
            "every machine to be deleted",
            Duration::from_secs(90),
            || {
                let t = t2.clone();
                async move {
                    copr_pools::resources::list(&t.db, false)
                        .await
                        .unwrap()
                        .is_empty()
                        .then_some(())
                }
            },
        )
        .await;
        server.stop();
        assert_no_leak_no_double_delete(&t.dir.path().join("cloud"));
        assert_usage_counted_once(&t).await;
        assert!(
            taken.len() > 10,
            "the load did run: {} tickets",
            taken.len()
        );
    })
    .await;
}

/// Every machine's time, from its start to its end, is in the usage once: five `kill -9`s
/// lost none of it and counted none twice. (A machine's start instant is its row's creation,
/// a few milliseconds after the pass that started it.)
async fn assert_usage_counted_once(t: &TestDb) {
    use copr_pools::entities::{resources, usage};
    let machines = resources::Entity::find().all(&t.db).await.unwrap();
    assert!(!machines.is_empty());
    let lived: i64 = machines
        .iter()
        .map(|m| m.ended_ms.expect("every machine ended") - m.created_at.timestamp_millis())
        .sum();
    let counted: i64 = usage::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .iter()
        .map(|u| u.machine_ms)
        .sum();
    let slack = 100 * machines.len() as i64;
    assert!(
        (counted - lived).abs() <= slack,
        "usage {counted} ms for machines that lived {lived} ms ({} machines)",
        machines.len()
    );
    let starts: i32 = usage::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .iter()
        .map(|u| u.starts)
        .sum();
    assert_eq!(starts as usize, machines.len(), "every start counted once");
}

/// A machine serves one ticket at a time: the [assigned, closed] spans of the tickets of one
/// machine never overlap.
fn assert_no_overlapping_assignments(all: &[tickets::Model]) {
    let mut by_machine: std::collections::BTreeMap<i32, Vec<(i64, i64, i32)>> = Default::default();
    for t in all {
        if let (Some(r), Some(a)) = (t.resource_id, t.assigned_ms) {
            by_machine
                .entry(r)
                .or_default()
                .push((a, t.closed_ms.unwrap_or(i64::MAX), t.id));
        }
    }
    for (machine, mut spans) in by_machine {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "machine {machine} served tickets {} and {} at once",
                w[0].2,
                w[1].2
            );
        }
    }
}
