//! The engine end to end on the fake cloud: machines start, serve tickets over XML-RPC, are
//! reused, deleted (STARTING ones too) and never leaked; pool changes apply without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use copr_pools::audit::Actor;
use copr_pools::bench::RpcClient;
use copr_pools::engine::model::{PoolConfig, PoolState, Tag};
use copr_pools::resources::{self, Selection};
use dxr::Value;

use crate::support::{TestDb, each_db, eventually, repo_root};
use crate::xmlrpc::start;

/// A pool on the fake cloud whose state lives in `cloud`.
pub fn fake_pool(name: &str, cloud: &Path, env: &str) -> PoolConfig {
    let root = repo_root();
    let prefix = format!("FAKE_CLOUD_DIR={} {env}", cloud.display());
    let mut p = PoolConfig::new(
        name,
        format!("{prefix} {}/fake-cloud/fake-new", root.display()),
        format!("{prefix} {}/fake-cloud/fake-delete", root.display()),
    );
    p.cmd_list = Some(format!("{prefix} {}/fake-cloud/fake-list", root.display()));
    p.cmd_livecheck = Some(format!(
        "{prefix} {}/fake-cloud/fake-livecheck",
        root.display()
    ));
    p.cmd_release = Some(format!(
        "{prefix} {}/fake-cloud/fake-release",
        root.display()
    ));
    p.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
    p
}

/// What the fake cloud's event log says: per machine, how often it was created, failed and
/// deleted.
pub fn cloud_events(cloud: &Path) -> BTreeMap<String, (u32, u32, u32)> {
    let text = std::fs::read_to_string(cloud.join("events.log")).unwrap_or_default();
    let mut events: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for line in text.lines() {
        let Some((kind, name)) = line.split_once(' ') else {
            continue;
        };
        // `delete-missing` (a delete of a machine that is gone, or that a killed cmd_new
        // never created) is what idempotent deletes are for; it is not counted.
        if !matches!(kind, "create" | "fail" | "delete") {
            continue;
        }
        let e = events.entry(name.to_string()).or_default();
        match kind {
            "create" => e.0 += 1,
            "fail" => e.1 += 1,
            _ => e.2 += 1,
        }
    }
    events
}

/// Every machine created is gone exactly once: deleted, or cleaned up by its failed start.
pub fn assert_no_leak_no_double_delete(cloud: &Path) {
    let left: Vec<String> = std::fs::read_dir(cloud.join("machines"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "machines leaked in the fake cloud: {left:?}"
    );
    for (name, (created, failed, deleted)) in cloud_events(cloud) {
        assert_eq!(created, 1, "{name} created {created} times");
        assert_eq!(
            failed + deleted,
            1,
            "{name}: failed {failed}, deleted {deleted} times"
        );
    }
}

async fn live_machines(t: &TestDb) -> usize {
    resources::list(&t.db, false).await.unwrap().len()
}

#[tokio::test]
async fn machines_serve_tickets_and_none_leak() {
    each_db(|t| async move {
        let cloud = t.dir.path().join("cloud");
        let mut pool = fake_pool(
            "fake",
            &cloud,
            "FAKE_CLOUD_BOOT_DELAY=0.2 FAKE_CLOUD_FAIL_RATE=0.2",
        );
        pool.max = 6;
        pool.max_starting = 3;
        pool.max_prealloc = 3;
        pool.reuse_opportunity_time = 2;
        pool.reuse_max_count = 3;
        let rpc = start(&t, &[pool.clone()], 1 << 20).await;
        let client = RpcClient::new(&format!("{}/RPC2", rpc.url));

        let mut builds = Vec::new();
        for i in 0..24 {
            let c = client.clone();
            builds.push(tokio::spawn(async move {
                let id = c
                    .take(
                        &["arch_x86_64", "copr_builder"],
                        &format!("@team/p--u{}", i % 4),
                    )
                    .await
                    .unwrap();
                let out = c
                    .call("waitTicket", vec![Value::Integer(id)])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.call("closeTicket", vec![Value::Integer(id)])
                    .await
                    .unwrap();
                out
            }));
        }
        for b in builds {
            let out = tokio::time::timeout(Duration::from_secs(90), b)
                .await
                .expect("build finished")
                .unwrap();
            let Value::Base64(data) = out else {
                panic!("{out:?}")
            };
            assert!(
                String::from_utf8(data).unwrap().starts_with("10."),
                "the address from fake-new"
            );
        }

        // Drain the pool: every machine goes, and the cloud is empty.
        pool.state = PoolState::Draining;
        copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap();
        rpc.engine.wake();
        let t2 = t.clone();
        eventually("the pool to drain", Duration::from_secs(60), || {
            let t = t2.clone();
            async move { (live_machines(&t).await == 0).then_some(()) }
        })
        .await;
        assert_no_leak_no_double_delete(&cloud);
        let events = cloud_events(&cloud);
        assert!(events.len() >= 3, "machines were started: {events:?}");
        drop(rpc);
    })
    .await;
}

#[tokio::test]
async fn pool_changes_apply_on_the_next_pass() {
    each_db(|t| async move {
        let cloud = t.dir.path().join("cloud");
        let mut pool = fake_pool("grow", &cloud, "");
        pool.max_prealloc = 1;
        pool.max_starting = 4;
        let rpc = start(&t, &[pool.clone()], 1 << 20).await;
        let t2 = t.clone();
        eventually("one machine up", Duration::from_secs(20), || {
            let t = t2.clone();
            async move { (resources::list(&t.db, true).await.unwrap().len() == 1).then_some(()) }
        })
        .await;
        pool.max_prealloc = 3;
        copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap();
        let t2 = t.clone();
        eventually("three machines up after the change", Duration::from_secs(20), || {
            let t = t2.clone();
            async move { (resources::list(&t.db, true).await.unwrap().len() == 3).then_some(()) }
        })
        .await;
        // Start statistics in resalloc-webui's /api/stats shape.
        let app = crate::support::TestApp::new(&t).await;
        let (status, body) = app.get("/api/stats").await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["grow"]["startup_success_rate"], 1.0, "{body}");
        assert!(stats["grow"]["startup_time_avg"].as_f64().unwrap() > 0.0);
        assert!(stats["grow"]["last_successful_start"].as_f64().unwrap() > 1.7e9);
        drop(rpc);
    })
    .await;
}

#[tokio::test]
async fn a_starting_machine_can_be_deleted() {
    each_db(|t| async move {
        let cloud = t.dir.path().join("cloud");
        let mut pool = fake_pool("slow", &cloud, "FAKE_CLOUD_BOOT_DELAY=120");
        pool.max_prealloc = 1;
        let rpc = start(&t, &[pool], 1 << 20).await;
        let t2 = t.clone();
        let id = eventually("a STARTING machine", Duration::from_secs(20), || {
            let t = t2.clone();
            async move {
                resources::list(&t.db, false)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|r| r.state == "STARTING")
                    .map(|r| r.id)
            }
        })
        .await;
        // fake-new has created the machine and is booting it.
        let cloud2 = cloud.clone();
        eventually(
            "fake-new to create the machine",
            Duration::from_secs(10),
            || {
                let c = cloud2.clone();
                async move { (!cloud_events(&c).is_empty()).then_some(()) }
            },
        )
        .await;
        let outcome = resources::request_delete(
            &t.db,
            &Selection::Ids(vec![id]),
            &Actor::Cli("tester".into()),
        )
        .await
        .unwrap();
        assert_eq!(outcome[0].result, "marked for deletion");
        rpc.engine.wake();
        let t2 = t.clone();
        eventually(
            "the deleted machine to end",
            Duration::from_secs(20),
            || {
                let t = t2.clone();
                async move {
                    let m = resources::find(&t.db, &id.to_string())
                        .await
                        .unwrap()
                        .unwrap();
                    (m.state == "ENDED").then_some(())
                }
            },
        )
        .await;
        let events = cloud_events(&cloud);
        let name = resources::find(&t.db, &id.to_string())
            .await
            .unwrap()
            .unwrap()
            .name
            .unwrap();
        assert_eq!(
            events.get(&name),
            Some(&(1, 0, 1)),
            "created once, deleted once: {events:?}"
        );
        let log = std::fs::read_to_string(t.dir.path().join(format!("logs/hooks/{id:06}_alloc")))
            .unwrap();
        assert!(log.contains("cancelled"), "{log}");
        drop(rpc);
    })
    .await;
}

#[tokio::test]
async fn failing_livechecks_fail_the_ticket_and_replace_the_machine() {
    each_db(|t| async move {
        let cloud = t.dir.path().join("cloud");
        let mut pool = fake_pool("sick", &cloud, "");
        pool.max_prealloc = 1;
        pool.livecheck_period = 1;
        pool.livecheck_attempts = 2;
        let rpc = start(&t, &[pool], 1 << 20).await;
        let client = RpcClient::new(&format!("{}/RPC2", rpc.url));
        let id = client.take(&["copr_builder"], "s").await.unwrap();
        client
            .call("waitTicket", vec![Value::Integer(id)])
            .await
            .unwrap();
        let machine = resources::list(&t.db, true)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.ticket == Some(id))
            .unwrap();
        std::fs::create_dir_all(cloud.join("dead")).unwrap();
        std::fs::write(cloud.join("dead").join(machine.name.clone().unwrap()), "").unwrap();
        let c2 = client.clone();
        eventually("the ticket to FAIL", Duration::from_secs(30), || {
            let c = c2.clone();
            async move {
                let Value::Struct(m) = c
                    .call("collectTicket", vec![Value::Integer(id)])
                    .await
                    .unwrap()
                else {
                    return None;
                };
                (m.get("failed") == Some(&Value::Boolean(true))).then_some(())
            }
        })
        .await;
        drop(rpc);
    })
    .await;
}
