//! `copr-pools bench`: figures, not assertions. Runs the real engine and XML-RPC listener
//! in-process on a throw-away database, drives them like Copr's backend does, and prints
//! throughput and latency; `--mode core` times one engine pass over a large synthetic world.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dxr::{MethodCall, MethodResponse, Value};
use tokio_util::sync::CancellationToken;

use crate::audit::Actor;
use crate::cli::BenchArgs;
use crate::config::Config;
use crate::db;
use crate::engine::model::*;
use crate::engine::{Engine, EngineSettings, core};

pub async fn run(config: &Config, args: BenchArgs) -> anyhow::Result<()> {
    // Figures on stdout; only warnings on stderr unless a log level was asked for.
    let mut quiet = config.clone();
    if std::env::var_os("COPR_POOLS_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        quiet.log = "warn".into();
    }
    crate::telemetry::init(&quiet);
    let modes: Vec<&str> = match args.mode.as_str() {
        "all" => vec!["core", "cycles", "backlog", "routing", "history", "live"],
        m @ ("core" | "cycles" | "backlog" | "routing" | "history" | "live") => vec![m],
        other => bail!(
            "unknown mode {other:?}; use core, cycles, backlog, routing, history, live or all"
        ),
    };
    println!(
        "copr-pools {} bench on {} CPU(s)",
        app::VERSION,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for mode in modes {
        match mode {
            "core" => bench_core(),
            "routing" => bench_routing(),
            "cycles" => bench_cycles(config, &args).await?,
            "history" if args.database != "sqlite" && args.mode == "all" => {
                println!(
                    "history: skipped (it measures the SQLite file; run it with --database sqlite)"
                )
            }
            "history" => bench_history(&args).await?,
            "live" => {
                bench_live(config, &args, 0).await?;
                bench_live(config, &args, args.pages).await?;
            }
            _ => bench_backlog(config, &args).await?,
        }
    }
    Ok(())
}

/// A world of 50 pools, 2,000 ready machines and 10,000 waiting tickets.
pub fn synthetic_world() -> World {
    let mut world = World::default();
    for i in 0..50u32 {
        let mut p = PoolConfig::new(format!("pool{i:02}"), "true", "true");
        p.tags = vec![
            Tag::new("copr_builder", i64::from(i % 3)),
            Tag::new(format!("arch_{}", i % 5), 0),
        ];
        p.max = 60;
        p.max_prealloc = 40;
        world.pools.insert(
            p.name.clone(),
            Pool {
                config: p,
                runtime: PoolRuntime::default(),
            },
        );
    }
    let mut id = 0i64;
    let pools: Vec<(String, Vec<Tag>)> = world
        .pools
        .values()
        .map(|p| (p.config.name.clone(), p.config.tags.clone()))
        .collect();
    for (name, tags) in pools {
        for j in 0..40u32 {
            id += 1;
            let mut r = Resource::starting(id, &name, format!("{name}_{id:08}"), j, Vec::new());
            r.state = RState::Up;
            r.tags = tags.clone();
            r.up_at = Some(0);
            r.check_last = Some(0);
            if j % 4 == 0 {
                // A quarter were used before and wait for their sandbox's next build.
                r.sandbox = Some(format!("owner/p{j}--u"));
                r.sandboxed_since = Some(0);
                r.released_at = Some(0);
                r.releases = 1;
            }
            world.resources.insert(id, r);
        }
    }
    for t in 1..=10_000i64 {
        let tags = vec!["copr_builder".to_string(), format!("arch_{}", t % 5)];
        let sandbox = Some(format!("owner/p{}--u", t % 40));
        world.tickets.insert(
            t,
            Ticket {
                id: t,
                state: TState::Open,
                tags,
                sandbox,
                resource: None,
            },
        );
    }
    world
}

fn bench_core() {
    let world = synthetic_world();
    let mut times = Vec::new();
    let mut assigned = 0;
    for _ in 0..20 {
        let mut w = world.clone();
        let start = Instant::now();
        let out = core::pass(&mut w, 1_000_000, &mut |t| format!("r{t}"));
        times.push(start.elapsed());
        assigned = out.assigned_tickets().count();
    }
    times.sort();
    println!(
        "core: one pass over 10000 waiting tickets, 2000 machines, 50 pools: median {:.1} ms, min {:.1} ms ({} assignments)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        assigned
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A throw-away database, the engine and an XML-RPC listener on a free loopback port.
struct Rig {
    engine: Engine,
    url: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    label: String,
    /// The PostgreSQL schema to drop afterwards.
    schema: Option<(String, String)>,
}

impl Rig {
    async fn finish(self) {
        self.stop.cancel();
        if let Some((url, schema)) = &self.schema
            && let Ok(admin) = db::connect(&db::DbSettings {
                url: url.clone(),
                max_connections: 1,
                schema: None,
            })
            .await
        {
            let _ = sea_orm::ConnectionTrait::execute_unprepared(
                &admin,
                &format!("DROP SCHEMA {schema} CASCADE"),
            )
            .await;
        }
    }
}

async fn rig(config: &Config, args: &BenchArgs, pool: PoolConfig) -> anyhow::Result<Rig> {
    let dir = tempfile::tempdir()?;
    let (settings, label) = match args.database.as_str() {
        "sqlite" => (
            db::DbSettings {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.sqlite").display()
                ),
                max_connections: config.database_max_connections,
                schema: None,
            },
            "SQLite".to_string(),
        ),
        "postgres" => {
            let url = "postgres://postgres@127.0.0.1:5432/test".to_string();
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let admin = db::connect(&db::DbSettings {
                url: url.clone(),
                max_connections: 1,
                schema: None,
            })
            .await?;
            sea_orm::ConnectionTrait::execute_unprepared(
                &admin,
                &format!("CREATE SCHEMA {schema}"),
            )
            .await?;
            (
                db::DbSettings {
                    url,
                    max_connections: config.database_max_connections,
                    schema: Some(schema),
                },
                "PostgreSQL".to_string(),
            )
        }
        url => (
            db::DbSettings {
                url: url.to_string(),
                max_connections: config.database_max_connections,
                schema: None,
            },
            db::redact_url(url),
        ),
    };
    let conn = db::connect(&settings).await?;
    db::migrate(&conn).await?;
    crate::pools::save(&conn, &[pool], &Actor::System).await?;
    let mut engine_settings = EngineSettings::new(dir.path().join("logs"));
    engine_settings.livecheck_concurrency = 4;
    let engine = Engine::new(conn, engine_settings);
    let stop = CancellationToken::new();
    {
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/RPC2", listener.local_addr()?);
    {
        let app = crate::xmlrpc::router(engine.clone(), 1 << 20);
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
        });
    }
    let schema = settings.schema.clone().map(|s| (settings.url.clone(), s));
    Ok(Rig {
        engine,
        url,
        stop,
        _dir: dir,
        label,
        schema,
    })
}

/// A minimal XML-RPC client over reqwest, as Copr's backend would call.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
}

impl RpcClient {
    pub fn new(url: &str) -> RpcClient {
        RpcClient {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            url: url.to_string(),
        }
    }

    pub async fn call(&self, method: &str, params: Vec<Value>) -> anyhow::Result<Value> {
        let body = MethodCall {
            name: method.into(),
            params,
        }
        .to_xml()?;
        let text = self
            .http
            .post(&self.url)
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await?
            .text()
            .await?;
        Ok(MethodResponse::from_xml(&text)
            .with_context(|| format!("not a response: {text}"))?
            .value)
    }

    pub async fn take(&self, tags: &[&str], sandbox: &str) -> anyhow::Result<i32> {
        let tags = Value::Array(tags.iter().map(|t| Value::String(t.to_string())).collect());
        match self
            .call("takeTicket", vec![tags, Value::String(sandbox.into())])
            .await?
        {
            Value::Integer(i) => Ok(i),
            other => bail!("takeTicket answered {other:?}"),
        }
    }
}

fn bench_pool(name: &str, max: u32, prealloc: u32) -> PoolConfig {
    let mut p = PoolConfig::new(name, "echo 127.0.0.1", "true");
    p.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
    p.max = max;
    p.max_starting = max;
    p.max_prealloc = prealloc;
    p.reuse_opportunity_time = 3600;
    p.reuse_max_time = 0;
    p
}

async fn wait_up(engine: &Engine, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = crate::resources::list(engine.db(), true).await?.len();
        if up >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {up} of {count} machines came up in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bench_cycles(config: &Config, args: &BenchArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let rig = rig(
        config,
        args,
        bench_pool("bench", clients as u32 * 2, clients as u32),
    )
    .await?;
    wait_up(&rig.engine, clients).await?;
    let cycles = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut handles = Vec::new();
    for c in 0..clients {
        let (client, cycles, running) = (RpcClient::new(&rig.url), cycles.clone(), running.clone());
        handles.push(tokio::spawn(async move {
            let sandbox = format!("bench/project--client{c}");
            let mut latencies = Vec::new();
            while running.load(Ordering::Relaxed) {
                let start = Instant::now();
                let id = client
                    .take(&["arch_x86_64", "copr_builder"], &sandbox)
                    .await?;
                client.call("waitTicket", vec![Value::Integer(id)]).await?;
                latencies.push(start.elapsed());
                client
                    .call("collectTicket", vec![Value::Integer(id)])
                    .await?;
                client.call("closeTicket", vec![Value::Integer(id)]).await?;
                cycles.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    running.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "cycles ({}): {} clients, {:.0} ticket cycles/s (take, wait, collect, close) over {:.1} s; take->ready p50 {:.1} ms, p95 {:.1} ms; {} engine passes",
        rig.label,
        clients,
        cycles.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.95)),
        rig.engine.stats().passes,
    );
    rig.finish().await;
    Ok(())
}

async fn bench_backlog(config: &Config, args: &BenchArgs) -> anyhow::Result<()> {
    let machines = args.machines.max(1);
    let rig = rig(config, args, bench_pool("backlog", machines, machines)).await?;
    wait_up(&rig.engine, machines as usize).await?;
    let client = RpcClient::new(&rig.url);
    let start = Instant::now();
    let mut takes = Vec::new();
    for i in 0..args.tickets {
        let client = client.clone();
        takes.push(tokio::spawn(async move {
            client
                .take(&["arch_x86_64", "copr_builder"], &format!("owner/p{i}--u"))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in takes {
        ids.push(t.await??);
    }
    let taken = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = rig.engine.stats().assigned;
        if ready >= u64::from(machines) {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {machines} tickets were served in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "backlog ({}): {} tickets taken in {:.0} ms; all {} servable tickets ready {:.0} ms after the first take",
        rig.label,
        ids.len(),
        ms(taken),
        machines,
        ms(start.elapsed()),
    );
    rig.finish().await;
    Ok(())
}

/// 500 rules shaped like Fedora's (owner, project with PR directories, chroot alternations,
/// packages), each adding `on_demand_powerful` or a team tag.
pub fn synthetic_rules(n: usize) -> Vec<crate::routing::served::ServedRule> {
    (0..n)
        .map(|i| crate::routing::served::ServedRule {
            position: i as i32 + 1,
            pattern: match i % 4 {
                0 => format!("@group{i}/project[^/]*/.*(x86_64|aarch64)/pkg{i}"),
                1 => format!("user{i}/.*/fedora-.*/(llvm|clang){i}"),
                2 => format!("^@python/python3\\.{i}\\d*/.*/root$"),
                _ => format!("@team{i}/.*"),
            },
            tags: vec![if i % 2 == 0 {
                "on_demand_powerful".to_string()
            } else {
                format!("team_team{i}")
            }],
        })
        .collect()
}

/// How long one build's match takes over 500 rules, inside the server (the compiled set of
/// the current version, as `/api/v1/routing/match` and the previews use it).
fn bench_routing() {
    let rules = synthetic_rules(500);
    let started = Instant::now();
    let snapshot = crate::routing::served::Snapshot::new(1, chrono::Utc::now(), rules)
        .expect("500 rules compile");
    let compile = started.elapsed();
    let builds: Vec<String> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!(
                "@group{}/project:pr:{i}/fedora-rawhide-aarch64/pkg{}",
                (i * 4) % 500,
                (i * 4) % 500
            ),
            1 => format!("someone{i}/proj/fedora-41-x86_64/package-{i}"),
            _ => format!(
                "@python/python3.{}/fedora-41-x86_64/root",
                (i * 4 + 2) % 500
            ),
        })
        .collect();
    let mut times = Vec::with_capacity(10_000);
    let mut matched = 0usize;
    for round in 0..10 {
        for b in &builds {
            let t = Instant::now();
            let (tags, _) = snapshot.route(b);
            times.push(t.elapsed());
            if round == 0 && !tags.is_empty() {
                matched += 1;
            }
        }
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "routing: 500 rules compiled in {:.1} ms ({} bytes of JSON); match p50 {:.1} µs, p99 {:.1} µs over {} builds ({} of {} matched a rule)",
        compile.as_secs_f64() * 1e3,
        snapshot.json.len(),
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100]),
        times.len(),
        matched,
        builds.len()
    );
}

/// What 90 days of history cost: 50 pools (and the total) filled to the retention limits,
/// in rows and bytes of the database file.
async fn bench_history(args: &BenchArgs) -> anyhow::Result<()> {
    use crate::engine::history::{ALL, FINE, FINE_KEEP_MS, HOURLY, HOURLY_KEEP_MS};
    use crate::entities::pool_history;
    use sea_orm::{EntityTrait, PaginatorTrait, Set};
    if args.database != "sqlite" {
        bail!("--mode history measures the SQLite file; run it with --database sqlite");
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("history.sqlite");
    let conn = db::connect(&db::DbSettings {
        url: format!("sqlite://{}?mode=rwc", file.display()),
        max_connections: 2,
        schema: None,
    })
    .await?;
    db::migrate(&conn).await?;
    let before = sqlite_bytes(&conn).await?;
    let mut pools: Vec<String> = (0..50).map(|i| format!("pool{i:02}")).collect();
    pools.push(ALL.to_string());
    let now = 1_800_000_000_000i64;
    let start = Instant::now();
    let mut rows = 0u64;
    for (step, keep) in [(FINE, FINE_KEEP_MS), (HOURLY, HOURLY_KEEP_MS)] {
        let step_ms = i64::from(step) * 1000;
        let count = keep / step_ms;
        let txn = db::begin_write(&conn).await?;
        for pool in &pools {
            let mut batch = Vec::new();
            for k in 0..count {
                let at = now - keep + k * step_ms;
                batch.push(pool_history::ActiveModel {
                    pool: Set(pool.clone()),
                    step_secs: Set(step),
                    at_ms: Set(at),
                    ready: Set((k % 7) as f64),
                    taken: Set((k % 11) as f64 + 0.5),
                    starting: Set((k % 3) as f64),
                    ending: Set((k % 2) as f64),
                    waiting: Set((k % 13) as f64 * 1.25),
                    samples: Set(if step == FINE { 1 } else { 12 }),
                    starts: Set((k % 5) as i32),
                    start_failures: Set((k % 17 == 0) as i32),
                    assigned: Set((k % 9) as i32),
                    to_ready_p50_ms: Set(Some(40_000 + k % 1000)),
                    to_ready_p95_ms: Set(Some(180_000 + k % 5000)),
                });
                if batch.len() == 500 {
                    rows += batch.len() as u64;
                    pool_history::Entity::insert_many(std::mem::take(&mut batch))
                        .exec_without_returning(&txn)
                        .await?;
                }
            }
            if !batch.is_empty() {
                rows += batch.len() as u64;
                pool_history::Entity::insert_many(batch)
                    .exec_without_returning(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
    }
    let counted = pool_history::Entity::find().count(&conn).await?;
    let after = sqlite_bytes(&conn).await?;
    println!(
        "history: 50 pools + the total, {} fine rows ({} min, kept {} h) and {} hourly rows (kept {} days) each: {} rows, {:.1} MiB in SQLite ({:.0} bytes a row, index included); written in {:.1} s",
        FINE_KEEP_MS / (i64::from(FINE) * 1000),
        FINE / 60,
        FINE_KEEP_MS / 3_600_000,
        HOURLY_KEEP_MS / (i64::from(HOURLY) * 1000),
        HOURLY_KEEP_MS / 86_400_000,
        counted,
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / rows.max(1) as f64,
        start.elapsed().as_secs_f64(),
    );
    let charts = Instant::now();
    let drawn =
        crate::charts::pool_charts(&conn, "pool07", app::api::charts::ChartRange::Quarter, now)
            .await?;
    let svg: usize = drawn
        .iter()
        .map(|c| c.svg.as_ref().map_or(0, String::len))
        .sum();
    println!(
        "history: one pool's three 90-day charts read and drawn in {:.0} ms, {} KiB of SVG",
        ms(charts.elapsed()),
        svg / 1024
    );
    Ok(())
}

/// The bytes of a SQLite database's pages in use.
async fn sqlite_bytes(conn: &sea_orm::DatabaseConnection) -> anyhow::Result<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let one = |sql: &str| Statement::from_string(conn.get_database_backend(), sql.to_string());
    let pages: i64 = conn
        .query_one(one("PRAGMA page_count"))
        .await?
        .context("page_count")?
        .try_get_by_index(0)?;
    let free: i64 = conn
        .query_one(one("PRAGMA freelist_count"))
        .await?
        .context("freelist_count")?
        .try_get_by_index(0)?;
    let size: i64 = conn
        .query_one(one("PRAGMA page_size"))
        .await?
        .context("page_size")?
        .try_get_by_index(0)?;
    Ok((pages - free) * size)
}

/// This process's CPU time (user + system) and resident memory, from /proc.
fn usage_now() -> (Duration, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (tv(ru.ru_utime) + tv(ru.ru_stime), rss_kib)
}

/// `pages` browsers follow the status page's live stream while 1,000 tickets go through 200
/// machines (take, wait for a machine, close); prints the run's CPU time and memory, and what
/// the browsers received. Run once with no browsers and once with them: the difference is
/// what the open pages cost (their HTTP clients run in this process too, so it is an upper
/// bound).
async fn bench_live(config: &Config, args: &BenchArgs, pages: usize) -> anyhow::Result<()> {
    let machines = args.machines.max(1);
    let rig = rig(config, args, bench_pool("live", machines, machines)).await?;
    wait_up(&rig.engine, machines as usize).await?;
    let key = crate::config::Secret::new(crate::secrets::generate_key());
    let vault = crate::credentials::Vault::new(
        rig.engine.db().clone(),
        Arc::new(crate::secrets::Keyring::parse(&[key])?),
    );
    let store = crate::auth::session::Store::new(rig.engine.db(), None).await?;
    let state = crate::state::AppState::new(
        Arc::new(config.clone()),
        rig.engine.db().clone(),
        rig.engine.clone(),
        vault,
    );
    let live = state.live.clone();
    let app = crate::web::app(state, &store);
    // The listener `serve` runs, on a free port.
    let listener = crate::web::Listeners::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        crate::web::threads(config.web_threads),
    )?;
    let web = format!("http://{}", listener.local_addr());
    tokio::spawn(listener.serve(app, tokio::runtime::Handle::current(), rig.stop.clone())?);
    let (cpu0, rss0) = usage_now();
    let messages = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut readers = Vec::new();
    for _ in 0..pages {
        let (http, url, messages, bytes) = (
            http.clone(),
            format!("{web}/events/status"),
            messages.clone(),
            bytes.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut res = http.get(url).send().await?.error_for_status()?;
            while let Some(chunk) = res.chunk().await? {
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                let n = chunk.windows(5).filter(|w| w == b"data:").count();
                messages.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // Every page has its first message before the run starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages.load(Ordering::Relaxed) < pages as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {pages} pages got their first message in 60 s",
                messages.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, rss1) = usage_now();
    let first = messages.load(Ordering::Relaxed);

    let client = RpcClient::new(&rig.url);
    let mut runs = Vec::new();
    let start = tokio::time::Instant::now();
    for i in 0..args.tickets {
        let client = client.clone();
        runs.push(tokio::spawn(async move {
            // Builds arrive at 100 a second, as a busy Copr's would, rather than all at once.
            tokio::time::sleep_until(start + Duration::from_millis(10 * i as u64)).await;
            // 50 projects: a released machine waits for its project's next build (reuse).
            let sandbox = format!("owner/p{}--u", i % 50);
            let id = client
                .take(&["arch_x86_64", "copr_builder"], &sandbox)
                .await?;
            client.call("waitTicket", vec![Value::Integer(id)]).await?;
            client.call("closeTicket", vec![Value::Integer(id)]).await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::timeout(Duration::from_secs(600), async {
        for r in runs {
            r.await??;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("the 1,000 tickets were not all served in 600 s")??;
    let ran = start.elapsed();
    // Let the pages see the end of the run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu2, rss2) = usage_now();
    println!(
        "live ({}): {pages} status pages open; {} tickets (100 a second) through {machines} machines in {:.1} s; CPU {:.2} s during the run and 2 s after ({:.0} % of one core); memory (RSS) {:.1} MiB before the pages, {:.1} MiB with them connected, {:.1} MiB after the run; connecting them took {:.2} CPU-s; each page got {:.1} messages ({:.0} KiB) during the run; {} producer(s)",
        rig.label,
        args.tickets,
        ran.as_secs_f64(),
        (cpu2 - cpu1).as_secs_f64(),
        (cpu2 - cpu1).as_secs_f64() / (ran.as_secs_f64() + 2.0) * 100.0,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        (cpu1 - cpu0).as_secs_f64(),
        (messages.load(Ordering::Relaxed) - first) as f64 / pages.max(1) as f64,
        bytes.load(Ordering::Relaxed) as f64 / 1024.0 / pages.max(1) as f64,
        live.topics(),
    );
    for r in &readers {
        r.abort();
    }
    rig.finish().await;
    Ok(())
}
