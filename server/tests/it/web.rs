//! The web side: operational endpoints, the server-rendered status page, the 404 page and the
//! server function behind the page's live updates.

use axum::body::Body;
use copr_pools::audit::Actor;
use copr_pools::engine::model::{PoolConfig, Tag};
use copr_pools::engine::tickets;
use serde_json::Value;

use crate::support::{Kind, TestApp, TestDb, each_db};

#[tokio::test]
async fn healthz_and_readyz_answer_json() {
    each_db(|t| async move {
        let app = TestApp::new(&t).await;
        let (status, body) = app.get("/healthz").await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

        let (status, body) = app.get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ready");
        assert_eq!(v["migrations"], "current");
    })
    .await;
}

#[tokio::test]
async fn readyz_is_unavailable_until_migrations_ran() {
    let t = TestDb::unmigrated(Kind::Sqlite).await;
    let app = TestApp::new(&t).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["pending_migrations"].as_array().map(Vec::len),
        Some(<migrations::Migrator as migrations::MigratorTrait>::migrations().len()),
        "every migration is pending: {body}"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn the_status_page_explains_pools_when_there_are_none() {
    each_db(|t| async move {
        let app = TestApp::new(&t).await;
        let (status, html) = app.get("/").await;
        assert_eq!(status, 200);
        assert!(
            html.contains("<title>Builder pools · copr-pools</title>"),
            "{html}"
        );
        assert!(html.contains(r#"<nav aria-label="Main""#));
        assert!(html.contains(r#"<main id="main""#));
        assert!(html.contains("No pools yet"));
        assert!(html.contains("No builds are waiting for a machine."));
        assert!(
            html.contains(&format!("copr-pools {}", env!("CARGO_PKG_VERSION"))),
            "footer shows the version"
        );
        // Server-rendered with the hydration script, and the live toggle disabled until then.
        assert!(html.contains("/pkg/copr-pools.js"));
        assert!(html.contains(r#"data-testid="live-toggle""#));
    })
    .await;
}

#[tokio::test]
async fn the_status_page_lists_pools_counts_and_the_queue() {
    each_db(|t| async move {
        let mut pool = PoolConfig::new("aws_x86_64_spot", "true", "true");
        pool.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
        pool.max = 7;
        pool.description = Some("Spot instances".into());
        copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap();
        tickets::take(
            &t.db,
            vec!["copr_builder".into(), "arch_x86_64".into()],
            None,
        )
        .await
        .unwrap();
        tickets::take(&t.db, vec!["arch_s390x".into()], None)
            .await
            .unwrap();

        let app = TestApp::new(&t).await;
        let (status, html) = app.get("/").await;
        assert_eq!(status, 200);
        assert!(html.contains("aws_x86_64_spot"), "{html}");
        assert!(
            html.contains(r#"data-label="Max" class="num">7<"#),
            "{html}"
        );
        assert!(html.contains("Spot instances"));
        assert!(html.contains(r#"data-testid="queue-table""#));
        assert!(
            html.contains("no pool offers these tags"),
            "the s390x ticket can never be served"
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_pages_are_404_with_a_way_back() {
    each_db(|t| async move {
        let app = TestApp::new(&t).await;
        let (status, html) = app.get("/no/such/page").await;
        assert_eq!(status, 404);
        assert!(html.contains("Page not found"));
        assert!(html.contains(r#"href="/""#));
    })
    .await;
}

#[tokio::test]
async fn the_status_server_function_answers_json() {
    each_db(|t| async move {
        let app = TestApp::new(&t).await;
        let req = http::Request::post("/api/ui/status")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = app.request(req).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["pools"], Value::Array(vec![]));
        assert!(v["generated_at"].as_i64().unwrap() > 1_700_000_000);
    })
    .await;
}

#[tokio::test]
async fn a_failed_engine_is_never_reported_running() {
    let t = TestDb::new(Kind::Sqlite).await;
    let engine = copr_pools::engine::Engine::new(
        t.db.clone(),
        crate::support::engine_settings(t.dir.path()),
    );
    let app = TestApp::with_engine(&t, copr_pools::config::Config::default(), engine.clone()).await;
    let shutdown = tokio_util::sync::CancellationToken::new();

    // A running engine, then one whose task panics halfway.
    let run = {
        let (e, s) = (engine.clone(), shutdown.clone());
        tokio::spawn(async move { e.run(s).await })
    };
    crate::support::eventually(
        "the engine to run",
        std::time::Duration::from_secs(10),
        || {
            let leader = engine.stats().leader;
            async move { leader.then_some(()) }
        },
    )
    .await;
    let (_, body) = app.get("/readyz").await;
    assert!(body.contains("\"engine\":\"running here\""), "{body}");
    shutdown.cancel();
    run.await.unwrap().unwrap();

    let mut panicking = tokio::spawn(async {
        if std::hint::black_box(true) {
            panic!("injected engine failure");
        }
        Ok(())
    });
    let verdict = engine
        .supervise(&mut panicking, &tokio_util::sync::CancellationToken::new())
        .await;
    let error = verdict.unwrap_err().to_string();
    assert!(error.contains("injected engine failure"), "{error}");
    let stats = engine.stats();
    assert!(stats.failed && !stats.leader);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["engine"], "failed");
    assert!(
        v["engine_error"].as_str().unwrap().contains("injected"),
        "{body}"
    );

    // An engine that returns on its own, unasked, fails the same way.
    let mut returned = tokio::spawn(async { Ok(()) });
    let verdict = engine
        .supervise(&mut returned, &tokio_util::sync::CancellationToken::new())
        .await;
    assert!(
        verdict
            .unwrap_err()
            .to_string()
            .contains("without being asked")
    );
    t.cleanup().await;
}

#[tokio::test]
async fn responses_forbid_framing_and_sniffing() {
    let t = TestDb::new(Kind::Sqlite).await;
    let app = TestApp::new(&t).await;
    for path in ["/", "/healthz", "/api/v1/me", "/no/such/page", "/api/stats"] {
        let (_, headers, _) = app
            .request(http::Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["referrer-policy"], "strict-origin-when-cross-origin",
            "{path}"
        );
    }
    t.cleanup().await;
}
