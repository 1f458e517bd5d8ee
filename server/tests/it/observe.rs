//! Seeing what the engine does: why a ticket waits (the ticket API, the status page's queue
//! and search, `copr-pools ticket info`), and `/metrics` read by a Prometheus text parser,
//! answered to loopback clients, `metrics_allow` and `metrics_token` only.

use std::time::Duration;

use axum::body::Body;
use copr_pools::audit::Actor;
use copr_pools::engine::Engine;
use copr_pools::engine::model::{PoolConfig, PoolState, Tag};
use copr_pools::engine::tickets;
use copr_pools::waiting::WaitingCache;
use tokio_util::sync::CancellationToken;

use crate::auth::dev_config;
use crate::support::{
    Browser, TestApp, TestDb, copr_pools, each_db, engine_settings, eventually, llvm_pool_up,
};

async fn powerful_pool(t: &TestDb) {
    let mut p = PoolConfig::new("powerful", "true", "true");
    p.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
    p.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
    p.max = 1;
    copr_pools::pools::save(&t.db, &[p], &Actor::System)
        .await
        .unwrap();
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

async fn json(app: &TestApp, path: &str) -> (http::StatusCode, serde_json::Value) {
    let (status, body) = app.get(path).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

#[tokio::test]
async fn a_waiting_ticket_says_why() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        // No engine runs: the explanation is read from the database as the engine would.
        let app = TestApp::new(&t).await;
        let python = tickets::take(
            &t.db,
            tags(&["copr_builder", "arch_x86_64", "on_demand_powerful"]),
            Some("@python/python3.14--churchyard".into()),
        )
        .await
        .unwrap();
        let s390x = tickets::take(&t.db, tags(&["copr_builder", "arch_s390x"]), None)
            .await
            .unwrap();

        let (status, doc) = json(&app, &format!("/api/v1/tickets/{python}")).await;
        assert_eq!(status, 200);
        assert_eq!(doc["state"], "OPEN");
        assert_eq!(doc["sandbox"], "@python/python3.14--churchyard");
        assert_eq!(doc["tags"][2], "on_demand_powerful");
        assert!(doc["age"].as_f64().unwrap() >= 0.0);
        assert_eq!(doc["waiting_reason"]["code"], "start_pending");
        assert!(
            doc["waiting_reason"]["text"]
                .as_str()
                .unwrap()
                .contains("powerful"),
            "{doc}"
        );

        let (_, doc) = json(&app, &format!("/api/v1/tickets/{s390x}")).await;
        assert_eq!(doc["waiting_reason"]["code"], "no_pool_offers_tag");
        assert_eq!(doc["waiting_reason"]["tag"], "arch_s390x");

        // Paused: the pool that could serve it is named, and the sentence says what to do.
        copr_pools::pools::set_state(&t.db, &Actor::System, "powerful", PoolState::Paused, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await; // past the shared explanation's second
        let (_, doc) = json(&app, &format!("/api/v1/tickets/{python}")).await;
        assert_eq!(doc["waiting_reason"]["code"], "pool_paused");
        assert_eq!(doc["waiting_reason"]["pool"], "powerful");

        // Search by owner or project, and by id.
        let (status, found) = json(&app, "/api/v1/tickets?q=python3.14").await;
        assert_eq!(status, 200);
        assert_eq!(found["tickets"].as_array().unwrap().len(), 1, "{found}");
        assert_eq!(found["tickets"][0]["id"], python);
        let (_, found) = json(&app, &format!("/api/v1/tickets?q=%23{s390x}")).await;
        assert_eq!(found["tickets"][0]["id"], s390x);

        // Bad input: a clear 4xx with a reason.
        let (status, doc) = json(&app, "/api/v1/tickets/99999999").await;
        assert_eq!(status, 404);
        assert!(doc["message"].as_str().unwrap().contains("99999999"));
        let (status, _) = json(&app, "/api/v1/tickets/abc").await;
        assert_eq!(status, 400);
        let (status, doc) = json(&app, "/api/v1/tickets?q=").await;
        assert_eq!(status, 400);
        assert!(doc["message"].as_str().unwrap().contains("owner"));

        // The status page: the queue says why per group, and the search finds the build,
        // without JavaScript.
        let mut anon = Browser::new(&app);
        let (_, _, html) = anon.get("/").await;
        assert!(html.contains("data-code=\"pool_paused\""), "{html}");
        assert!(
            html.contains("No pool offers the tag `arch_s390x`"),
            "{html}"
        );
        let (_, _, html) = anon.get("/?q=%40python").await;
        assert!(html.contains("data-testid=\"found-tickets\""), "{html}");
        assert!(html.contains("@python/python3.14--churchyard"));
        let (_, _, html) = anon.get("/?q=nobody-at-all").await;
        assert!(html.contains("data-testid=\"found-none\""));

        // The closed ticket has no reason; the command line says the same as the API.
        tickets::close(&t.db, s390x).await.unwrap();
        let (_, doc) = json(&app, &format!("/api/v1/tickets/{s390x}")).await;
        assert_eq!(doc["state"], "CLOSED");
        assert!(doc["waiting_reason"].is_null());
        let out = copr_pools(&t, &[])
            .args(["ticket", "info", &python.to_string(), "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cli["waiting_reason"]["code"], "pool_paused");
        let out = copr_pools(&t, &[])
            .args(["ticket", "info", &python.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("waiting:  Pool powerful is paused"), "{text}");
        let out = copr_pools(&t, &[])
            .args(["ticket", "info", "99999999"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no ticket 99999999"));
    })
    .await;
}

#[tokio::test]
async fn one_explanation_serves_every_reader_for_a_second() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        let cache = WaitingCache::new(Duration::from_secs(3600));
        let id = tickets::take(&t.db, tags(&["copr_builder"]), Some("a/b--c".into()))
            .await
            .unwrap();
        for _ in 0..5 {
            copr_pools::waiting::search(&t.db, &cache, "a/b")
                .await
                .unwrap();
        }
        assert_eq!(cache.computed(), 1);
        // A ticket taken after the explanation is explained afresh, not reported reasonless.
        let later = tickets::take(&t.db, tags(&["copr_builder"]), None)
            .await
            .unwrap();
        let detail = copr_pools::waiting::ticket(&t.db, &cache, later)
            .await
            .unwrap()
            .unwrap();
        assert!(detail.waiting_reason.is_some());
        assert_eq!(cache.computed(), 2);
        let _ = id;

        // Following the engine: a change is explained afresh soon after, not a second later.
        let (bump, changes) = tokio::sync::watch::channel(0u64);
        let following = WaitingCache::following(changes);
        following.get(&t.db).await.unwrap();
        following.get(&t.db).await.unwrap();
        assert_eq!(following.computed(), 1);
        bump.send_modify(|n| *n += 1);
        tokio::time::sleep(copr_pools::waiting::AFTER_CHANGE).await;
        following.get(&t.db).await.unwrap();
        following.get(&t.db).await.unwrap();
        assert_eq!(following.computed(), 2);
    })
    .await;
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e}\n{text}"))
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// A sample: family, labels, the least value.
type Expected = (&'static str, &'static [(&'static str, &'static str)], f64);

/// The status `/metrics` answers through `router` with these headers.
async fn status_of(router: &crate::support::Client, headers: &[(&str, &str)]) -> http::StatusCode {
    use tower::ServiceExt;
    let mut req = http::Request::get("/metrics");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn metrics_parse_and_stay_private() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        // The engine runs: a machine starts (cmd_new is `true`) and serves the first ticket;
        // the second asks for a tag nobody offers and waits.
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let stop = CancellationToken::new();
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await });
        let served = tickets::take(&t.db, tags(&["copr_builder", "on_demand_powerful"]), None)
            .await
            .unwrap();
        tickets::take(&t.db, tags(&["copr_builder", "arch_s390x"]), None)
            .await
            .unwrap();
        engine.wake();
        let db = t.db.clone();
        eventually(
            "the first ticket gets a machine",
            Duration::from_secs(20),
            || {
                let db = db.clone();
                async move {
                    tickets::collect(&db, served)
                        .await
                        .unwrap()
                        .filter(|v| v.ready())
                }
            },
        )
        .await;
        let app = TestApp::with_engine(&t, dev_config(), engine).await;
        let (status, _) = app.get("/healthz").await;
        assert_eq!(status, 200);
        let (status, _) = app.get("/api/v1/tickets/12345678").await;
        assert_eq!(status, 404);
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["packagers"]).await;

        let (status, text) = app.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        let scrape = parse(&text);
        // (family, labels, at least): the state every replica reads from the database, and
        // what this process counted.
        let expected: &[Expected] = &[
            ("copr_pools_pools", &[("state", "active")], 1.0),
            ("copr_pools_pools", &[("state", "retired")], 0.0),
            (
                "copr_pools_machines",
                &[("pool", "powerful"), ("state", "UP")],
                1.0,
            ),
            (
                "copr_pools_tickets_waiting",
                &[("tags", "arch_s390x copr_builder")],
                1.0,
            ),
            (
                "copr_pools_http_requests_total",
                &[("route", "/healthz"), ("status", "200")],
                1.0,
            ),
            // The route, not the path: ids make no new series.
            (
                "copr_pools_http_requests_total",
                &[("route", "/api/v1/tickets/:id"), ("status", "404")],
                1.0,
            ),
            ("copr_pools_sign_ins_total", &[("outcome", "success")], 1.0),
            (
                "copr_pools_hook_runs_total",
                &[("kind", "alloc"), ("outcome", "success")],
                1.0,
            ),
        ];
        for (family, labels, least) in expected {
            let found = value(&scrape, family, labels);
            assert!(
                found.is_some_and(|v| v >= *least && (*least > 0.0 || v == 0.0)),
                "{family}{labels:?} = {found:?}, expected {least}: {text}"
            );
        }
        for line in [
            "copr_pools_ticket_ready_seconds_count 1",
            "# TYPE copr_pools_hook_duration_seconds histogram",
            "copr_pools_hook_duration_seconds_count{kind=\"alloc\"}",
            "# TYPE copr_pools_engine_pass_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }

        // From another host: refused, unless allowed or with the token.
        assert_eq!(status_of(&app.remote, &[]).await, 403);
        // Through a reverse proxy on this host, a visitor is not local either.
        assert_eq!(
            status_of(&app.router, &[("x-forwarded-for", "203.0.113.9")]).await,
            403
        );
        let open = TestApp::with_config(
            &t,
            copr_pools::config::Config {
                metrics_token: Some(copr_pools::config::Secret::new(
                    "scrape-me-scrape-me-scrape-me",
                )),
                ..dev_config()
            },
        )
        .await;
        let bearer = |token: &'static str| ("authorization", token);
        assert_eq!(
            status_of(
                &open.remote,
                &[bearer("Bearer scrape-me-scrape-me-scrape-me")]
            )
            .await,
            200
        );
        assert_eq!(
            status_of(&open.remote, &[bearer("Bearer guess")]).await,
            401
        );
        assert_eq!(status_of(&open.remote, &[]).await, 403);
        stop.cancel();
    })
    .await;
}

#[tokio::test]
async fn a_pool_page_shows_machines_to_all_and_addresses_and_logs_to_its_team() {
    each_db(|t| async move {
        use sea_orm::EntityTrait;

        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let app = TestApp::with_engine(&t, dev_config(), engine.clone()).await;
        // Signing in makes the team from the FAS group.
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["llvm"]).await;
        let (stop, machine) = llvm_pool_up(&t, &engine, Some("The LLVM team's own builders")).await;
        let name = machine.name.clone().unwrap();

        // Anyone: the configuration, the state, the machine; no address, no logs.
        let mut anon = Browser::new(&app);
        let (status, _, html) = anon.get("/pools/llvm-x86").await;
        assert_eq!(status, 200);
        assert!(
            html.contains("The LLVM team&#x27;s own builders")
                || html.contains("The LLVM team's own builders"),
            "{html}"
        );
        assert!(html.contains("data-testid=\"pool-config\""));
        assert!(html.contains("cmd_new"), "the pools.yaml view: {html}");
        assert!(html.contains(&name));
        assert!(!html.contains("10.9.8.7"), "no address for strangers");
        assert!(
            !html.contains("booting-llvm-builder"),
            "no hook logs for strangers"
        );
        let mut bob = Browser::new(&app);
        bob.dev_sign_in("bob", &["packagers"]).await;
        let (_, _, html) = bob.get("/pools/llvm-x86").await;
        assert!(!html.contains("10.9.8.7") && !html.contains("booting-llvm-builder"));
        assert!(
            !html.contains("data-testid=\"pool-actions\""),
            "bob may not pause it"
        );

        // The team: the address and the hook log; it may pause, not delete machines.
        let (_, _, html) = alice.get("/pools/llvm-x86").await;
        assert!(html.contains("10.9.8.7"), "{html}");
        assert!(html.contains("booting-llvm-builder"), "{html}");
        assert!(html.contains("data-testid=\"pool-actions\""));
        assert!(!html.contains("/machines/"), "no delete button for members");
        let token = alice.form_token("/pools/llvm-x86").await;
        let delete = format!("/pools/llvm-x86/machines/{}/delete", machine.id);
        let (status, _, _) = alice.post_form(&delete, &[("csrf_token", &token)]).await;
        assert_eq!(status, 403);

        // An admin deletes the machine from the page; it is audited.
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let token = carol.form_token("/pools/llvm-x86").await;
        let (status, h, _) = carol.post_form(&delete, &[("csrf_token", &token)]).await;
        assert_eq!(status, 303);
        assert_eq!(h["location"], "/pools/llvm-x86");
        let (_, _, html) = carol.get("/pools/llvm-x86").await;
        assert!(html.contains("marked for deletion"), "{html}");
        let audited = copr_pools::entities::audit_events::Entity::find()
            .all(&t.db)
            .await
            .unwrap()
            .into_iter()
            .any(|e| e.actor.contains("carol") && e.action == "resource.delete");
        assert!(audited, "the deletion is in the audit log");

        let (status, _, _) = anon.get("/pools/no-such-pool").await;
        assert_eq!(status, 404);
        stop.cancel();
    })
    .await;
}
