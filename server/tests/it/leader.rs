//! The engine leader on PostgreSQL: a stalled or dropped lock connection does not make the
//! leader step down, kill its hooks and delete machines; only another session holding the
//! lock does; a stalled connection never stops a shutdown or goes back to the pool.

use std::path::Path;
use std::time::Duration;

use copr_pools::audit::Actor;
use copr_pools::engine::leader::{LeaderSettings, key_for_schema};
use copr_pools::engine::model::{PoolConfig, Tag};
use copr_pools::engine::{Engine, EngineError};
use copr_pools::entities::resources;
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use tokio_util::sync::CancellationToken;

use crate::support::{
    StallingProxy, TestDb, engine_settings, eventually, pg_url, postgres_available,
};

/// A pool whose one machine starts when the test opens the gate, and whose deletes are
/// written down.
fn gated_pool(dir: &Path) -> PoolConfig {
    let gate = dir.join("gate");
    let mut p = PoolConfig::new(
        "gated",
        format!(
            "while [ ! -e {gate} ]; do sleep 0.05; done; echo 10.0.0.1",
            gate = gate.display()
        ),
        format!("echo $RESALLOC_NAME >> {}", dir.join("deleted").display()),
    );
    p.tags = vec![Tag::new("copr_builder", 0)];
    p.max_prealloc = 1;
    p
}

/// Probes every 200 ms, at most 500 ms each, looking the holder up after `failed_probes`.
fn quick(failed_probes: u32) -> LeaderSettings {
    LeaderSettings {
        probe_every: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        failed_probes,
        retry_every: Duration::from_millis(200),
    }
}

/// Runs the engine on `t` with these leader settings; returns the stop token and its task.
async fn engine(
    t: &TestDb,
    leader: LeaderSettings,
) -> (
    Engine,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), EngineError>>,
) {
    copr_pools::pools::save(&t.db, &[gated_pool(t.dir.path())], &Actor::System)
        .await
        .unwrap();
    let mut settings = engine_settings(t.dir.path());
    settings.leader = leader;
    let engine = Engine::new(t.db.clone(), settings);
    let stop = CancellationToken::new();
    let task = {
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await })
    };
    (engine, stop, task)
}

/// A connection to the test database that is not the engine's.
async fn admin() -> sea_orm::DatabaseConnection {
    copr_pools::db::connect(&copr_pools::db::DbSettings {
        url: pg_url(),
        max_connections: 1,
        schema: None,
    })
    .await
    .unwrap()
}

/// The process id and client port of the session holding the schema's engine lock.
async fn lock_holder(admin: &sea_orm::DatabaseConnection, schema: &str) -> Option<(i32, i32)> {
    let key = key_for_schema(schema);
    let high = i64::from((key as u64 >> 32) as u32);
    let low = i64::from(key as u64 as u32);
    let row = admin
        .query_one(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT l.pid, coalesce(a.client_port, -1) AS port FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 \
               AND l.objid::bigint = $2 AND l.objsubid = 1",
            [high.into(), low.into()],
        ))
        .await
        .unwrap()?;
    Some((
        row.try_get("", "pid").unwrap(),
        row.try_get("", "port").unwrap(),
    ))
}

async fn machine_state(t: &TestDb) -> Vec<String> {
    resources::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect()
}

/// Waits until the gated machine's `cmd_new` runs; returns an admin connection and the
/// process id and client port of the engine's lock session.
async fn leading(engine: &Engine, schema: &str) -> (sea_orm::DatabaseConnection, i32, u16) {
    hook_running(engine).await;
    let admin = admin().await;
    let (pid, port) = lock_holder(&admin, schema)
        .await
        .expect("the engine holds its lock");
    (admin, pid, u16::try_from(port).unwrap_or(0))
}

async fn finish(admin: sea_orm::DatabaseConnection, t: TestDb) {
    admin.close().await.ok();
    t.cleanup().await;
}

/// Waits until the gated machine's `cmd_new` runs.
async fn hook_running(engine: &Engine) {
    let e = engine.clone();
    eventually("cmd_new to be running", Duration::from_secs(30), || {
        let running = e.stats().hooks_running;
        async move { (running == 1).then_some(()) }
    })
    .await;
}

/// Opens the gate and waits for the machine to come up; asserts nothing was deleted and the
/// hook was never cancelled.
async fn machine_comes_up_untouched(t: &TestDb) {
    std::fs::write(t.dir.path().join("gate"), "").unwrap();
    eventually(
        "the machine to come up",
        Duration::from_secs(30),
        || async { (machine_state(t).await == ["UP"]).then_some(()) },
    )
    .await;
    assert!(
        !t.dir.path().join("deleted").exists(),
        "a machine was deleted: {}",
        std::fs::read_to_string(t.dir.path().join("deleted")).unwrap_or_default()
    );
    let log = std::fs::read_to_string(t.dir.path().join("logs/hooks/000001_alloc")).unwrap();
    assert!(!log.contains("cancelled"), "{log}");
}

#[tokio::test]
async fn a_stalled_lock_connection_kills_no_hook_and_deletes_no_machine() {
    if !postgres_available().await {
        return;
    }
    let proxy = StallingProxy::start("127.0.0.1:5432").await;
    let t = TestDb::postgres_via(proxy.url()).await;
    let schema = t.settings.schema.clone().unwrap();
    // The shipped settings: a probe every 5 s that may take 5 s.
    let (engine, stop, task) = engine(&t, LeaderSettings::default()).await;
    let (admin, pid, port) = leading(&engine, &schema).await;

    // The lock's session stalls for 12 s, longer than a probe and its timeout together, while
    // every other connection works and cmd_new goes on creating its VM.
    proxy.stall(port);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        engine.stats().leader,
        "the leader stepped down over a slow connection"
    );
    assert_eq!(
        engine.stats().hooks_running,
        1,
        "the running cmd_new was stopped"
    );
    machine_comes_up_untouched(&t).await;
    proxy.resume_all();
    assert_eq!(lock_holder(&admin, &schema).await.map(|h| h.0), Some(pid));

    stop.cancel();
    task.await.unwrap().unwrap();
    finish(admin, t).await;
}

#[tokio::test]
async fn a_lost_lock_session_is_replaced_without_stopping_hooks() {
    if !postgres_available().await {
        return;
    }
    let t = TestDb::new(crate::support::Kind::Postgres).await;
    let schema = t.settings.schema.clone().unwrap();
    let (engine, stop, task) = engine(&t, quick(2)).await;
    let (admin, pid, _) = leading(&engine, &schema).await;

    // The server ends the lock's session (a restarted pgbouncer, an admin's
    // pg_terminate_backend, a network cut): the lock is free and nobody else wants it.
    admin
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    let new_pid = eventually(
        "the lock to be taken again",
        Duration::from_secs(30),
        || async {
            lock_holder(&admin, &schema)
                .await
                .map(|h| h.0)
                .filter(|p| *p != pid)
        },
    )
    .await;
    assert_ne!(new_pid, pid);
    assert!(engine.stats().leader);
    assert_eq!(
        engine.stats().hooks_running,
        1,
        "the running cmd_new was stopped"
    );
    machine_comes_up_untouched(&t).await;

    stop.cancel();
    task.await.unwrap().unwrap();
    finish(admin, t).await;
}

#[tokio::test]
async fn another_holder_of_the_lock_makes_the_leader_step_down() {
    if !postgres_available().await {
        return;
    }
    let t = TestDb::new(crate::support::Kind::Postgres).await;
    let schema = t.settings.schema.clone().unwrap();
    let (engine, stop, task) = engine(&t, quick(3)).await;
    let (admin, pid, _) = leading(&engine, &schema).await;
    // Another replica takes the lock the moment the leader's session ends.
    let key = key_for_schema(&schema);
    let got = admin
        .query_one(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT pg_terminate_backend({pid}), pg_advisory_lock({key}) IS NOT NULL AS got"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(got.try_get::<bool>("", "got").unwrap());
    let e = engine.clone();
    eventually("the leader to step down", Duration::from_secs(30), || {
        let (leader, running) = (e.stats().leader, e.stats().hooks_running);
        async move { (!leader && running == 0).then_some(()) }
    })
    .await;
    assert!(
        !task.is_finished(),
        "a replica that stepped down waits to lead again"
    );

    stop.cancel();
    task.await.unwrap().unwrap();
    finish(admin, t).await;
}

#[tokio::test]
async fn a_stalled_lock_connection_neither_stops_a_shutdown_nor_returns_to_the_pool() {
    if !postgres_available().await {
        return;
    }
    let proxy = StallingProxy::start("127.0.0.1:5432").await;
    let t = TestDb::postgres_via(proxy.url()).await;
    let schema = t.settings.schema.clone().unwrap();
    let (engine, stop, task) = engine(&t, quick(3)).await;
    let (admin, _, port) = leading(&engine, &schema).await;
    proxy.stall(port);

    // Shutting down while the lock's connection hangs: the unlock times out and the
    // connection is closed instead of going back to the pool.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the engine stopped although its lock connection hangs")
        .unwrap()
        .unwrap();
    assert!(!engine.stats().leader);
    proxy.resume_all();
    // Closed, the session ends and its lock with it, although the process and its pool live on.
    eventually("the lock to be free", Duration::from_secs(30), || async {
        lock_holder(&admin, &schema).await.is_none().then_some(())
    })
    .await;
    drop(engine);
    finish(admin, t).await;
}

/// A ticket taken on a replica that does not run the engine reaches the leader at once over
/// LISTEN/NOTIFY, and that replica's waitTicket caller hears of the machine at once: with a
/// 10-minute engine period and a 10-minute waiter re-read, only the wake-ups can make this
/// finish in time.
#[tokio::test]
async fn a_ticket_taken_on_a_standby_replica_is_served_without_waiting_for_a_pass() {
    if !postgres_available().await {
        return;
    }
    use copr_pools::engine::{signals, tickets};
    let t = TestDb::new(crate::support::Kind::Postgres).await;
    let mut p = PoolConfig::new("powerful", "echo 10.0.0.7", "true");
    p.tags = vec![Tag::new("copr_builder", 0)];
    p.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
    copr_pools::pools::save(&t.db, &[p], &Actor::System)
        .await
        .unwrap();
    let mut settings = engine_settings(t.dir.path());
    settings.period = Duration::from_secs(600);
    let leader = Engine::new(t.db.clone(), settings.clone());
    let standby = Engine::new(t.db.clone(), settings);
    let stop = CancellationToken::new();
    for e in [&leader, &standby] {
        let (e, s) = (e.clone(), stop.clone());
        tokio::spawn(signals::bridge(e, s));
    }
    let run = {
        let (e, s) = (leader.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await })
    };
    let (l, s) = (leader.clone(), standby.clone());
    eventually(
        "both replicas to listen and one to lead",
        Duration::from_secs(20),
        || {
            let ready =
                l.stats().leader && l.wake_channel().is_some() && s.wake_channel().is_some();
            async move { ready.then_some(()) }
        },
    )
    .await;
    // Let the leader's first pass (which finds nothing to do) end.
    let passes = leader.stats().passes;
    eventually("the first pass", Duration::from_secs(20), || {
        let done = leader.stats().passes > passes || passes > 0;
        async move { done.then_some(()) }
    })
    .await;

    let id = tickets::take(
        &t.db,
        vec!["copr_builder".into(), "on_demand_powerful".into()],
        None,
    )
    .await
    .unwrap();
    standby.wake();
    let data = tokio::time::timeout(
        Duration::from_secs(30),
        tickets::wait(&t.db, standby.waiters(), id, Duration::from_secs(600)),
    )
    .await
    .expect("the standby's waiter heard of the machine")
    .unwrap()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&data).trim(), "10.0.0.7");

    stop.cancel();
    run.await.unwrap().unwrap();
    t.cleanup().await;
}
