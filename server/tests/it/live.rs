//! The history behind the charts (sampled by the engine, rolled up hourly, forgotten after
//! its retention), the charts on the pages, and the pages' live streams: only what changed,
//! and a pool's private parts and a team's page only for those who may see them.

use std::time::Duration;

use app::api::charts::ChartRange;
use copr_pools::audit::Actor;
use copr_pools::engine::history::{self, FINE, HOURLY, Recorder, interval_of};
use copr_pools::engine::model::{PoolConfig, Tag};
use copr_pools::engine::{Engine, store, tickets};
use copr_pools::entities::pool_history;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;

use crate::auth::dev_config;
use crate::support::{Browser, TestApp, each_db, engine_settings, eventually, llvm_pool_up};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn builder_tags() -> Vec<String> {
    vec!["copr_builder".to_string()]
}

async fn row(
    db: &sea_orm::DatabaseConnection,
    pool: &str,
    step: i32,
    at: i64,
) -> Option<pool_history::Model> {
    pool_history::Entity::find_by_id((pool.to_string(), step, at))
        .one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn history_is_sampled_rolled_up_charted_and_forgotten() {
    each_db(|t| async move {
        let mut p = PoolConfig::new("fedora-x86", "echo 10.0.0.1", "true");
        p.tags = vec![Tag::new("copr_builder", 0)];
        p.max = 1;
        copr_pools::pools::save(&t.db, &[p], &Actor::System)
            .await
            .unwrap();
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let stop = CancellationToken::new();
        let (e, s) = (engine.clone(), stop.clone());
        let run = tokio::spawn(async move { e.run(s).await });
        let first = tickets::take(&t.db, builder_tags(), Some("@python/py--u".into()))
            .await
            .unwrap();
        engine.wake();
        let db = t.db.clone();
        let assigned = eventually(
            "the first ticket's machine",
            Duration::from_secs(20),
            || {
                let db = db.clone();
                async move {
                    copr_pools::entities::tickets::Entity::find_by_id(first as i32)
                        .one(&db)
                        .await
                        .unwrap()
                        .and_then(|t| t.assigned_ms)
                }
            },
        )
        .await;
        stop.cancel();
        run.await.unwrap().unwrap();

        // The runner sampled its interval and counted the start in the pass that saw it.
        let at = interval_of(assigned, FINE);
        let started = pool_history::Entity::find()
            .filter(pool_history::Column::Pool.eq("fedora-x86"))
            .filter(pool_history::Column::StepSecs.eq(FINE))
            .all(&t.db)
            .await
            .unwrap();
        assert_eq!(
            started.iter().map(|r| r.starts).sum::<i32>(),
            1,
            "{started:?}"
        );
        assert_eq!(started.iter().map(|r| r.start_failures).sum::<i32>(), 0);
        assert!(started.iter().any(|r| r.samples == 1), "{started:?}");
        let all = pool_history::Entity::find()
            .filter(pool_history::Column::Pool.eq(history::ALL))
            .all(&t.db)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.starts).sum::<i32>(),
            1,
            "the total counts it too"
        );

        // A second build waits: the machine is taken and max is 1.
        tickets::take(&t.db, builder_tags(), Some("@python/py2--u".into()))
            .await
            .unwrap();
        let world = store::load(&t.db).await.unwrap().world;

        // The next interval: a sample, and the time to a machine of the one before.
        let mut recorder = Recorder::default();
        let next = at + i64::from(FINE) * 1000;
        assert!(
            history::record(&t.db, &world, next + 1000, &mut recorder)
                .await
                .unwrap()
        );
        assert!(
            !history::record(&t.db, &world, next + 2 * MIN, &mut recorder)
                .await
                .unwrap(),
            "one sample an interval"
        );
        // A pool that appears is sampled at once, not an interval later.
        let mut newer = PoolConfig::new("fedora-ppc", "echo 10.0.0.2", "true");
        newer.tags = vec![Tag::new("arch_ppc64le", 0)];
        copr_pools::pools::save(&t.db, &[newer], &Actor::System)
            .await
            .unwrap();
        let world = store::load(&t.db).await.unwrap().world;
        assert!(
            history::record(&t.db, &world, next + 3 * MIN, &mut recorder)
                .await
                .unwrap()
        );
        assert_eq!(
            row(&t.db, "fedora-ppc", FINE, next).await.unwrap().samples,
            1
        );
        let sample = row(&t.db, "fedora-x86", FINE, next).await.unwrap();
        assert_eq!(
            (sample.taken, sample.waiting, sample.samples),
            (1.0, 1.0, 1)
        );
        let total = row(&t.db, history::ALL, FINE, next).await.unwrap();
        assert_eq!((total.taken, total.waiting), (1.0, 1.0));
        let closed = row(&t.db, "fedora-x86", FINE, at).await.unwrap();
        assert_eq!(closed.assigned, 1);
        let took = closed.to_ready_p50_ms.expect("a p50");
        assert!((0..20_000).contains(&took), "{took} ms");
        assert_eq!(closed.to_ready_p95_ms, Some(took));

        // The charts read it; the status page shows them with their accessible names.
        let charts =
            copr_pools::charts::pool_charts(&t.db, "fedora-x86", ChartRange::Day, next + MIN)
                .await
                .unwrap();
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["machines", "to-ready", "start-success"]);
        assert!(charts.iter().all(|c| c.svg.is_some()), "{charts:?}");
        assert!(
            charts[0].summary.contains("1 taken"),
            "{}",
            charts[0].summary
        );
        assert!(
            charts[0].summary.contains("1 build waiting"),
            "{}",
            charts[0].summary
        );
        assert!(
            charts[2].summary.contains("1 start in"),
            "{}",
            charts[2].summary
        );
        let app = TestApp::new(&t).await;
        let (status, html) = app.get("/pools/fedora-x86").await;
        assert_eq!(status, 200);
        assert!(html.contains("data-chart=\"machines\""), "{html}");
        assert!(html.contains("id=\"chart-machines-title\""));
        assert!(html.contains("aria-labelledby=\"chart-machines-title chart-machines-summary\""));
        let (_, html) = app.get("/?range=90d").await;
        assert!(
            html.contains("Machines by state and waiting builds, last 90 days"),
            "{html}"
        );
        assert!(html.contains("aria-current=\"page\""));

        // The hour after: one hourly row of the hour's samples and counts.
        let hour = interval_of(assigned, HOURLY);
        let mut recorder = Recorder::default();
        history::record(&t.db, &world, hour + HOUR + 1000, &mut recorder)
            .await
            .unwrap();
        let rolled = row(&t.db, "fedora-x86", HOURLY, hour).await.unwrap();
        assert_eq!(rolled.starts, 1);
        assert_eq!(rolled.assigned, 1);
        assert!(rolled.samples >= 1);
        assert!((0.0..=1.0).contains(&rolled.taken));

        // Fine rows go after a day, hourly ones after 90 days.
        let mut recorder = Recorder::default();
        history::record(&t.db, &world, hour + 27 * HOUR, &mut recorder)
            .await
            .unwrap();
        assert!(row(&t.db, "fedora-x86", FINE, at).await.is_none());
        assert!(row(&t.db, "fedora-x86", HOURLY, hour).await.is_some());
        let mut recorder = Recorder::default();
        history::record(&t.db, &world, hour + 92 * 24 * HOUR, &mut recorder)
            .await
            .unwrap();
        assert!(row(&t.db, "fedora-x86", HOURLY, hour).await.is_none());
    })
    .await;
}

fn keys(message: &serde_json::Value) -> Vec<String> {
    message
        .as_object()
        .unwrap_or_else(|| panic!("an object: {message}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn live_pages_send_what_changed_to_those_who_may_see_it() {
    each_db(|t| async move {
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let app = TestApp::with_engine(&t, dev_config(), engine.clone()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["llvm"]).await;
        let (stop, _) = llvm_pool_up(&t, &engine, None).await;
        let wait = Duration::from_secs(10);

        // The status page: everything first, then only what changed.
        let mut anon = Browser::new(&app);
        let (status, headers, mut status_page) = anon.events("/events/status").await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/event-stream");
        let first = status_page.next_json(wait).await.expect("a first message");
        assert_eq!(keys(&first), ["charts", "pools", "queue"], "{first}");
        assert_eq!(first["pools"][0]["name"], "llvm-x86");
        assert_eq!(first["queue"], serde_json::json!([]));
        // A build no pool can serve waits: the queue changes, the pools do not.
        tickets::take(
            &t.db,
            vec!["arch_s390x".into()],
            Some("@python/py--u".into()),
        )
        .await
        .unwrap();
        engine.wake();
        let change = status_page.next_json(wait).await.expect("the change");
        assert!(keys(&change).contains(&"queue".to_string()), "{change}");
        assert!(!keys(&change).contains(&"pools".to_string()), "{change}");
        assert_eq!(change["queue"][0]["tags"][0], "arch_s390x");
        assert_eq!(
            change["queue"][0]["reasons"][0]["code"],
            "no_pool_offers_tag"
        );

        // A pool's page: its address and hook logs go to its team only.
        let (status, _, mut public) = anon.events("/events/pools/llvm-x86").await;
        assert_eq!(status, 200);
        let seen = public.next(wait).await.unwrap();
        assert!(seen.contains("\"machines\""), "{seen}");
        assert!(
            !seen.contains("10.9.8.7") && !seen.contains("booting-llvm-builder"),
            "{seen}"
        );
        let top: serde_json::Value = serde_json::from_str(&seen).unwrap();
        assert!(
            top.get("logs").is_none(),
            "no logs section for the public: {seen}"
        );
        let (_, _, mut private) = alice.events("/events/pools/llvm-x86").await;
        let seen = private.next_json(wait).await.unwrap();
        assert!(seen["machines"][0]["data"] == "10.9.8.7", "{seen}");
        let logs = seen["logs"].to_string();
        assert!(
            logs.contains("booting-llvm-builder"),
            "the logs come apart: {seen}"
        );
        let (status, _, _) = anon.events("/events/pools/no-such-pool").await;
        assert_eq!(status, 404);

        // A team's page: its members (and admins) only.
        let (status, _, _) = anon.events("/events/teams/llvm").await;
        assert_eq!(status, 401);
        let mut bob = Browser::new(&app);
        bob.dev_sign_in("bob", &["packagers"]).await;
        let (status, _, _) = bob.events("/events/teams/llvm").await;
        assert_eq!(status, 403);
        let (status, _, mut team_page) = alice.events("/events/teams/llvm").await;
        assert_eq!(status, 200);
        let first = team_page.next_json(wait).await.unwrap();
        assert_eq!(keys(&first), ["charts", "pools"], "{first}");
        assert_eq!(first["pools"][0]["name"], "llvm-x86");
        let ids: Vec<&str> = first["charts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["usage-hours", "usage-cost"]);
        // The team page shows them without JavaScript.
        let (_, _, html) = alice.get("/teams/llvm").await;
        assert!(html.contains("data-chart=\"usage-hours\""), "{html}");
        assert!(html.contains("Cost in "), "{html}");

        // The pool is given to no team: the team's open stream ends (its browser reconnects
        // and is authorized again).
        {
            use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
            let pool = copr_pools::entities::pools::Entity::find_by_id("llvm-x86".to_string())
                .one(&t.db)
                .await
                .unwrap()
                .unwrap();
            let mut pool = pool.into_active_model();
            pool.owner_team_id = Set(None);
            pool.update(&t.db).await.unwrap();
        }
        engine.note_change();
        let mut ended = false;
        for _ in 0..20 {
            if private.next(Duration::from_secs(5)).await.is_none() {
                ended = true;
                break;
            }
        }
        assert!(
            ended,
            "the private stream of a pool its team no longer owns ends"
        );
        stop.cancel();
    })
    .await;
}
