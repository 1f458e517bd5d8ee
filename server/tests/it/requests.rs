//! Pool requests through their forms: checked fields that keep what was typed, a preview of
//! the cost, submit, withdraw, reject with a reason, approve once (two tabs make one pool),
//! the pool and routing rule approval makes, machines on the team's account that only the
//! team's builds get, pause and resume by members, changes approved like requests.

use std::time::Duration;

use copr_pools::config::Config;
use copr_pools::engine::Engine;
use copr_pools::engine::model::Tag;
use copr_pools::entities::{pool_requests, routing_rules};
use sea_orm::EntityTrait;
use tokio_util::sync::CancellationToken;

use crate::auth::dev_config;
use crate::support::{Browser, TestApp, each_db, engine_settings, eventually, repo_root, vault};

pub fn config() -> Config {
    Config {
        demo_spawners: true,
        spawners_dir: repo_root().join("spawners"),
        ..dev_config()
    }
}

/// team-a's `local` demo credential (id 1), made by alice.
pub async fn local_credential(b: &mut Browser<'_>) {
    let token = b.form_token("/teams/team-a/credentials/new").await;
    let (status, headers, _) = b
        .post_form(
            "/teams/team-a/credentials",
            &[
                ("csrf_token", &token),
                ("kind", "local"),
                ("variant", ""),
                ("name", "demo"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/teams/team-a/credentials/1");
}

/// A valid request form for team-a's credential 1, with `overrides`.
fn request_form(
    name: &str,
    overrides: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let mut form: Vec<(&'static str, String)> = vec![
        ("credential", "1".into()),
        ("name", name.into()),
        ("pool_kind", "dedicated".into()),
        ("arch_x86_64", "on".into()),
        ("budget", "preallocated".into()),
        ("prealloc", "1".into()),
        ("max", "2".into()),
        ("price_per_hour", "0.5".into()),
        ("monthly_cap", "1000".into()),
        ("build_hours", "50".into()),
        ("scope", "@team-a/.*".into()),
        ("justification", "Builders for our LLVM snapshots.".into()),
        ("action", "submit".into()),
    ];
    for (k, v) in overrides {
        form.retain(|(key, _)| key != k);
        form.push((k, v.to_string()));
    }
    form
}

/// How many requests are stored.
async fn requests_stored(t: &crate::support::TestDb) -> usize {
    pool_requests::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .len()
}

/// Posts a new state for pool alpha-x86_64.
async fn set_state(
    b: &mut Browser<'_>,
    token: &str,
    state: &str,
    back: &str,
) -> (http::StatusCode, http::HeaderMap, String) {
    let form = [("csrf_token", token), ("state", state), ("back", back)];
    b.post_form("/pools/alpha-x86_64/state", &form).await
}

/// Posts the request form; returns where it went.
pub async fn post_request(b: &mut Browser<'_>, form: &[(&str, String)]) -> String {
    let token = b
        .form_token("/teams/team-a/requests/new?credential=1")
        .await;
    let mut pairs: Vec<(&str, &str)> = vec![("csrf_token", &token)];
    pairs.extend(form.iter().map(|(k, v)| (*k, v.as_str())));
    let (status, headers, body) = b.post_form("/teams/team-a/requests", &pairs).await;
    assert_eq!(status, 303, "{body}");
    headers["location"].to_str().unwrap().to_string()
}

/// Posts a form on `/requests/{id}/{what}` with the page's token.
async fn act(b: &mut Browser<'_>, id: i32, what: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let token = b.form_token(&format!("/requests/{id}")).await;
    let mut pairs = vec![("csrf_token", token.as_str())];
    pairs.extend_from_slice(fields);
    let (status, headers, body) = b.post_form(&format!("/requests/{id}/{what}"), &pairs).await;
    let to = headers
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or(body);
    (status.as_u16(), to)
}

#[tokio::test]
async fn a_member_requests_a_pool_and_an_admin_approves_it_once() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        let (_, _, html) = alice.get("/teams/team-a/requests/new").await;
        assert!(
            html.contains(r#"data-testid="no-credentials""#),
            "asks for a credential first"
        );
        local_credential(&mut alice).await;
        let (_, _, html) = alice.get("/teams/team-a/requests/new").await;
        assert!(
            html.contains("credential-choices")
                && html.contains("/teams/team-a/requests/new?credential=1")
        );

        // Bad input: errors beside the fields, everything typed kept.
        let back = post_request(
            &mut alice,
            &request_form(
                "Alpha Builders",
                &[
                    ("justification", "</textarea><b>short"),
                    ("max", "many"),
                    ("scope", "(?<=x)y"),
                ],
            ),
        )
        .await;
        assert_eq!(back, "/teams/team-a/requests/new?credential=1");
        let (_, _, html) = alice.get(&back).await;
        assert!(html.contains("3 fields need fixing"), "{html}");
        for kept in [
            r#"value="Alpha Builders""#,
            r#"value="many""#,
            "&lt;/textarea&gt;&lt;b&gt;short</textarea>",
            "(?&lt;=x)y</textarea>",
        ] {
            assert!(html.contains(kept), "{kept} kept");
        }
        assert!(html.contains(r#"id="r-name-error""#) && html.contains("lower-case letters"));
        assert!(
            html.contains("look-behind"),
            "the refused construct is named"
        );

        // Preview without JavaScript: the server's estimate of what was typed.
        let back = post_request(
            &mut alice,
            &request_form(
                "alpha",
                &[("action", "preview"), ("prealloc", "2"), ("max", "3")],
            ),
        )
        .await;
        let (_, _, html) = alice.get(&back).await;
        assert!(html.contains(r#"data-testid="preview""#));
        assert!(html.contains("$730.00"), "2 × 730 h × $0.50: {html}");
        assert_eq!(requests_stored(&t).await, 0);

        let to = post_request(&mut alice, &request_form("alpha", &[])).await;
        assert_eq!(to, "/requests/1");
        let (_, _, html) = alice.get(&to).await;
        assert!(html.contains("Submitted.") && html.contains(r#"data-testid="timeline""#));
        assert!(html.contains("submitted</strong> by alice"));
        assert!(html.contains(r#"data-testid="withdraw-form""#));
        assert!(
            !html.contains(r#"data-testid="approve-form""#),
            "members do not decide"
        );

        // Another team sees nothing of it and can do nothing to it.
        let mut bob = Browser::new(&app);
        bob.dev_sign_in("bob", &["team-b"]).await;
        assert_eq!(bob.get("/requests/1").await.0, 403);
        let token = bob.form_token("/teams/team-b/credentials/new").await;
        for what in ["withdraw", "approve", "reject"] {
            let (status, _, _) = bob
                .post_form(
                    &format!("/requests/1/{what}"),
                    &[("csrf_token", &token), ("reason", "because")],
                )
                .await;
            assert_eq!(status, 403, "{what}");
        }
        // Nor can it build on team-a's credential, by its team's form or by team-a's.
        let mut stolen: Vec<(&str, String)> = request_form("stolen", &[]);
        stolen.push(("csrf_token", token.clone()));
        let fields: Vec<(&str, &str)> = stolen.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, _) = bob.post_form("/teams/team-a/requests", &fields).await;
        assert_eq!(status, 403, "another team's form");
        let (status, h, _) = bob.post_form("/teams/team-b/requests", &fields).await;
        assert_eq!(status, 303);
        let (_, _, html) = bob.get(h["location"].to_str().unwrap()).await;
        assert!(html.contains("Choose one of your team"), "{html}");
        assert_eq!(
            requests_stored(&t).await,
            1,
            "no request on team-a's credential"
        );

        // The admin approves with adjusted limits; a second approval (another tab) fails.
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let (_, _, html) = carol.get("/admin/requests").await;
        assert!(html.contains("#1 alpha (team-a)"), "{html}");
        let (_, _, html) = carol.get("/requests/1").await;
        assert!(html.contains(r#"data-testid="approve-form""#));
        let token = carol.form_token("/requests/1").await;
        let approve = [
            ("csrf_token", token.as_str()),
            ("max", "3"),
            ("max_prealloc", "1"),
            ("max_starting", "2"),
            ("priority", "0"),
        ];
        let (status, _, _) = carol.post_form("/requests/1/approve", &approve).await;
        assert_eq!(status, 303);
        let (status, _, body) = carol.post_form("/requests/1/approve", &approve).await;
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("approved already by carol"), "{body}");
        let (_, _, html) = carol.get("/requests/1").await;
        assert!(html.contains("approved</strong> by carol"), "{html}");
        let (pools, _) = copr_pools::pools::load_all(&t.db).await.unwrap();
        assert_eq!(pools.len(), 1, "one pool, however many approvals");
        let p = &pools[0];
        assert_eq!(p.name, "alpha-x86_64");
        assert_eq!((p.max, p.max_prealloc, p.max_starting), (3, 1, 2));
        assert_eq!(p.tags_required, ["team_team-a"]);
        assert!(
            p.tags.contains(&Tag::new("team_team-a", 0))
                && p.tags.contains(&Tag::new("arch_noarch", 0))
        );
        assert_eq!(
            (p.price_per_hour, p.monthly_cap, p.credential_id),
            (Some(0.5), Some(1000.0), Some(1))
        );
        assert!(p.cmd_new.ends_with("spawners/local-new"), "{}", p.cmd_new);
        let rules = routing_rules::Entity::find().all(&t.db).await.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            (
                rules[0].pattern.as_str(),
                rules[0].tags.as_str(),
                rules[0].enabled
            ),
            ("@team-a/.*", r#"["team_team-a"]"#, true)
        );

        // The team page lists the pool and the request; members pause and resume it, the
        // rule following; draining is for admins.
        let (_, _, html) = alice.get("/teams/team-a").await;
        assert!(html.contains("alpha-x86_64") && html.contains(r#"data-testid="request-table""#));
        let token = alice.form_token("/teams/team-a").await;
        let (status, h, _) = set_state(&mut alice, &token, "paused", "/teams/team-a").await;
        assert_eq!(
            (status.as_u16(), h["location"].to_str().unwrap()),
            (303, "/teams/team-a")
        );
        let (_, _, html) = alice.get("/teams/team-a").await;
        assert!(html.contains("Pool alpha-x86_64 is paused now."), "{html}");
        assert!(
            !routing_rules::Entity::find().all(&t.db).await.unwrap()[0].enabled,
            "the rule follows the pool"
        );
        let (status, _, _) = set_state(&mut alice, &token, "draining", "/teams/team-a").await;
        assert_eq!(status, 403);
        let bob_token = bob.form_token("/teams/team-b/credentials/new").await;
        let (status, _, _) = set_state(&mut bob, &bob_token, "active", "/").await;
        assert_eq!(status, 403, "another team cannot resume it");
        set_state(&mut alice, &token, "active", "/teams/team-a").await;
        assert!(routing_rules::Entity::find().all(&t.db).await.unwrap()[0].enabled);

        // A change, approved like a request, remakes the pool with the new budget.
        let token = alice
            .form_token("/teams/team-a/requests/new?change=alpha-x86_64")
            .await;
        let (status, h, body) = alice
            .post_form(
                "/teams/team-a/requests",
                &[
                    ("csrf_token", token.as_str()),
                    ("change", "alpha-x86_64"),
                    ("credential", "1"),
                    ("budget", "on_demand"),
                    ("max", "4"),
                    ("price_per_hour", "0.5"),
                    ("build_hours", "80"),
                    ("justification", "More builds than we thought."),
                    ("action", "submit"),
                ],
            )
            .await;
        assert_eq!(status, 303, "{body}");
        assert_eq!(h["location"], "/requests/2");
        let (status, _) = act(&mut carol, 2, "approve", &[]).await;
        assert_eq!(status, 303);
        let p = copr_pools::pools::load_all(&t.db)
            .await
            .unwrap()
            .0
            .remove(0);
        assert_eq!((p.max, p.max_prealloc), (4, 0));
        assert_eq!(
            p.tags_on_demand,
            vec![Tag::new("team_team-a", 0)],
            "on demand now"
        );

        // A pool an admin drained stays drained: members neither resume nor pause it.
        let admin_token = carol.form_token("/admin").await;
        let (status, h, _) =
            set_state(&mut carol, &admin_token, "draining", "/\\evil.example").await;
        assert_eq!(
            (status.as_u16(), h["location"].to_str().unwrap()),
            (303, "/"),
            "a `back` that leaves the site is not followed"
        );
        for wanted in ["active", "paused"] {
            let (status, _, _) = set_state(&mut alice, &token, wanted, "/teams/team-a").await;
            assert_eq!(status, 403, "a member cannot make a drained pool {wanted}");
        }

        // Every step is audited.
        let (_, _, html) = carol.get("/admin").await;
        for action in [
            "request.submit",
            "request.approve",
            "pool.pause",
            "pool.resume",
            "pool.create",
            "pool.update",
        ] {
            assert!(html.contains(action), "{action} audited");
        }
    })
    .await;
}

#[tokio::test]
async fn requests_are_withdrawn_by_members_and_rejected_only_with_a_reason() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        local_credential(&mut alice).await;
        post_request(&mut alice, &request_form("beta", &[])).await;
        post_request(
            &mut alice,
            &request_form(
                "gamma",
                &[("pool_kind", "community"), ("budget", "on_demand")],
            ),
        )
        .await;
        let (status, _) = act(&mut alice, 2, "withdraw", &[]).await;
        assert_eq!(status, 303);
        let (_, _, html) = alice.get("/requests/2").await;
        assert!(html.contains("withdrawn</strong> by alice") && !html.contains("withdraw-form"));

        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let (_, back) = act(&mut carol, 1, "reject", &[("reason", "")]).await;
        let (_, _, html) = carol.get(&back).await;
        assert!(html.contains("Say why"), "a reason is required: {html}");
        act(
            &mut carol,
            1,
            "reject",
            &[("reason", "Use the community pool for now.")],
        )
        .await;
        let (_, _, html) = alice.get("/requests/1").await;
        assert!(
            html.contains("rejected</strong> by carol")
                && html.contains("Use the community pool for now.")
        );
        assert!(
            copr_pools::pools::load_all(&t.db)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        let (status, _) = act(&mut alice, 2, "withdraw", &[]).await;
        assert_eq!(status, 409, "decided requests stay decided");
    })
    .await;
}

#[tokio::test]
async fn a_dedicated_pool_runs_on_the_team_account_and_serves_only_the_teams_builds() {
    each_db(|t| async move {
        let mut settings = engine_settings(t.dir.path());
        settings.hooks.credentials = Some(std::sync::Arc::new(vault(&t)));
        let engine = Engine::new(t.db.clone(), settings);
        let stop = CancellationToken::new();
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await });
        let app = TestApp::with_engine(&t, config(), engine.clone()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        local_credential(&mut alice).await;
        post_request(&mut alice, &request_form("alpha", &[])).await;
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        act(&mut carol, 1, "approve", &[]).await;

        // The local demo spawner's machine comes up: one kept ready.
        let db = t.db.clone();
        eventually(
            "the team's machine to be ready",
            Duration::from_secs(30),
            || {
                let db = db.clone();
                async move {
                    (copr_pools::resources::list(&db, true).await.unwrap().len() == 1).then_some(())
                }
            },
        )
        .await;
        let rpc = crate::xmlrpc::serve(&engine).await;
        let client = copr_pools::bench::RpcClient::new(&format!("{rpc}/RPC2"));
        let other = client
            .take(&["copr_builder", "arch_x86_64"], "someone/p--u")
            .await
            .unwrap();
        let mine = client
            .take(
                &["copr_builder", "arch_x86_64", "team_team-a"],
                "@team-a/p--u",
            )
            .await
            .unwrap();
        let out = client
            .call("waitTicket", vec![dxr::Value::Integer(mine)])
            .await
            .unwrap();
        assert_eq!(out, dxr::Value::Base64(b"127.0.0.1\n".to_vec()));
        // A few more passes, then someone else's build is still waiting.
        let before = engine.stats().passes;
        let e = engine.clone();
        eventually("three more engine passes", Duration::from_secs(30), || {
            e.wake();
            let passes = e.stats().passes;
            async move { (passes >= before + 3).then_some(()) }
        })
        .await;
        let collected = client
            .call("collectTicket", vec![dxr::Value::Integer(other)])
            .await
            .unwrap();
        let dxr::Value::Struct(m) = collected else {
            panic!()
        };
        assert_eq!(
            m["ready"],
            dxr::Value::Boolean(false),
            "someone else's build never gets the team's machine"
        );
        // It is metered on the team's pool.
        let used = copr_pools::entities::usage::Entity::find()
            .all(&t.db)
            .await
            .unwrap();
        assert!(
            used.iter()
                .any(|u| u.pool == "alpha-x86_64" && u.starts >= 1)
        );
        stop.cancel();
    })
    .await;
}

#[tokio::test]
async fn admins_keep_a_price_list_that_prefills_requests_and_edit_any_pool() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, config()).await;
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let (_, _, html) = carol.get("/admin/prices").await;
        assert!(html.contains(r#"data-testid="no-prices""#));
        let token = carol.form_token("/admin/prices").await;
        let (_, h, _) = carol
            .post_form(
                "/admin/prices",
                &[
                    ("csrf_token", &token),
                    ("kind", "aws"),
                    ("region", ""),
                    ("instance_type", "c7i.xlarge"),
                    ("price_per_hour", "-1"),
                ],
            )
            .await;
        let (_, _, html) = carol.get(h["location"].to_str().unwrap()).await;
        assert!(
            html.contains("2 fields need fixing") && html.contains(r#"value="c7i.xlarge""#),
            "{html}"
        );
        carol
            .post_form(
                "/admin/prices",
                &[
                    ("csrf_token", &token),
                    ("kind", "aws"),
                    ("region", "us-east-1"),
                    ("instance_type", "c7i.xlarge"),
                    ("price_per_hour", "0.357"),
                ],
            )
            .await;
        let (_, _, html) = carol.get("/admin/prices").await;
        assert!(
            html.contains("$0.36") && html.contains("price-table"),
            "{html}"
        );

        // A member's AWS form picks the price up when the instance type is known.
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        crate::credentials::add(
            &mut alice,
            "team-a",
            "aws",
            "",
            "aws-main",
            &[
                ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
                ("secret_access_key", crate::credentials::AWS_SECRET),
                ("region", "us-east-1"),
            ],
        )
        .await;
        let token = alice
            .form_token("/teams/team-a/requests/new?credential=1")
            .await;
        let (_, h, _) = alice
            .post_form(
                "/teams/team-a/requests",
                &[
                    ("csrf_token", &token),
                    ("credential", "1"),
                    ("instance_type", "c7i.xlarge"),
                    ("budget", "preallocated"),
                    ("prealloc", "1"),
                    ("max", "1"),
                    ("action", "preview"),
                ],
            )
            .await;
        let (_, _, html) = alice.get(h["location"].to_str().unwrap()).await;
        assert!(
            html.contains(r#"value="0.357""#),
            "the list price is filled in: {html}"
        );
        assert!(html.contains("$260.61"), "730 h × $0.357: {html}");

        // Admins edit any pool's limits; a wrong value says what to fix.
        let mut p = copr_pools::engine::model::PoolConfig::new("shared", "true", "true");
        p.tags = vec![Tag::new("copr_builder", 0)];
        copr_pools::pools::save(&t.db, &[p], &copr_pools::audit::Actor::System)
            .await
            .unwrap();
        let token = carol.form_token("/admin").await;
        let (_, h, _) = carol
            .post_form(
                "/pools/shared/limits",
                &[("csrf_token", &token), ("max", "x")],
            )
            .await;
        let (_, _, html) = carol.get(h["location"].to_str().unwrap()).await;
        assert!(html.contains("enter a whole number"), "{html}");
        carol
            .post_form(
                "/pools/shared/limits",
                &[
                    ("csrf_token", &token),
                    ("max", "9"),
                    ("price_per_hour", "0.2"),
                    ("monthly_cap", "50"),
                ],
            )
            .await;
        let p = copr_pools::pools::load_all(&t.db)
            .await
            .unwrap()
            .0
            .remove(0);
        assert_eq!(
            (p.max, p.price_per_hour, p.monthly_cap),
            (9, Some(0.2), Some(50.0))
        );
        let alice_token = alice.form_token("/teams/team-a").await;
        let (status, _, _) = alice
            .post_form(
                "/pools/shared/limits",
                &[("csrf_token", &alice_token), ("max", "90")],
            )
            .await;
        assert_eq!(status, 403, "members do not edit pools");
    })
    .await;
}

/// A pool whose month reached its cap starts nothing, not even its preallocation, and the
/// status page says why; once the month's cost is below the cap again it starts.
#[tokio::test]
async fn a_pool_at_its_monthly_cap_starts_nothing_and_the_status_page_says_why() {
    each_db(|t| async move {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let mut pool = crate::xmlrpc::local_pool("capped", "10.0.0.9");
        pool.max_prealloc = 1;
        pool.price_per_hour = Some(1.0);
        pool.monthly_cap = Some(10.0);
        copr_pools::pools::save(&t.db, &[pool], &copr_pools::audit::Actor::System)
            .await
            .unwrap();
        let today = copr_pools::engine::store::day_of(chrono::Utc::now().timestamp_millis());
        copr_pools::entities::usage::ActiveModel {
            pool: Set("capped".into()),
            day: Set(today),
            machine_ms: Set(36_000_000),
            cost: Set(10.0),
            starts: Set(3),
        }
        .insert(&t.db)
        .await
        .unwrap();

        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let stop = CancellationToken::new();
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run(s).await });
        let e = engine.clone();
        eventually("three engine passes", Duration::from_secs(30), || {
            e.wake();
            let passes = e.stats().passes;
            async move { (passes >= 3).then_some(()) }
        })
        .await;
        assert!(
            copr_pools::resources::list(&t.db, false)
                .await
                .unwrap()
                .is_empty(),
            "a capped pool starts no machine"
        );
        let app = TestApp::with_engine(&t, config(), engine.clone()).await;
        let (_, html) = app.get("/").await;
        assert!(
            html.contains("monthly cap reached: $10.00 of $10.00"),
            "{html}"
        );

        // The month's cost drops below the cap (a new month): the pool starts again.
        copr_pools::entities::usage::Entity::delete_many()
            .exec(&t.db)
            .await
            .unwrap();
        engine.wake();
        let db = t.db.clone();
        eventually("the preallocated machine", Duration::from_secs(30), || {
            let db = db.clone();
            async move {
                (!copr_pools::resources::list(&db, false)
                    .await
                    .unwrap()
                    .is_empty())
                .then_some(())
            }
        })
        .await;
        let (_, html) = app.get("/").await;
        assert!(!html.contains("monthly cap reached"), "{html}");
        stop.cancel();
    })
    .await;
}

/// Posts a change request for `pool` with `fields`; returns where it went.
async fn post_change(b: &mut Browser<'_>, pool: &str, fields: &[(&str, &str)]) -> String {
    let token = b
        .form_token(&format!("/teams/team-a/requests/new?change={pool}"))
        .await;
    let mut pairs = vec![
        ("csrf_token", token.as_str()),
        ("change", pool),
        ("credential", "1"),
        ("price_per_hour", "0.5"),
        ("justification", "The builds changed their pace."),
        ("action", "submit"),
    ];
    pairs.extend_from_slice(fields);
    let (status, headers, body) = b.post_form("/teams/team-a/requests", &pairs).await;
    assert_eq!(status, 303, "{body}");
    headers["location"].to_str().unwrap().to_string()
}

/// The rules in the database, as (pattern, tags).
async fn rules(t: &crate::support::TestDb) -> Vec<(String, String)> {
    routing_rules::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.pattern, r.tags))
        .collect()
}

/// Routing stays consistent: scopes that would take every build from Copr's pools are
/// refused, a name taken meanwhile stops an approval, a change is to one pool (its own cap),
/// and switching a community pool between on demand and preallocated rewrites its rule,
/// while pools that share a tag switch together or not at all.
#[tokio::test]
async fn scopes_names_and_budget_changes_keep_routing_consistent() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        local_credential(&mut alice).await;
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;

        for (kind, budget, scope, says) in [
            (
                "dedicated",
                "preallocated",
                ".*",
                "does not name whose projects",
            ),
            ("community", "on_demand", ".*/.*", "matches every build"),
            (
                "community",
                "on_demand",
                "",
                "Name the builds this on-demand pool is for",
            ),
        ] {
            let back = post_request(
                &mut alice,
                &request_form(
                    "wide",
                    &[("pool_kind", kind), ("budget", budget), ("scope", scope)],
                ),
            )
            .await;
            assert!(back.starts_with("/teams/team-a/requests/new"), "{back}");
            let (_, _, html) = alice.get(&back).await;
            assert!(html.contains(says), "{kind} {scope:?}: {html}");
        }
        assert!(
            pool_requests::Entity::find()
                .all(&t.db)
                .await
                .unwrap()
                .is_empty()
        );

        // A community pool on demand for chromium builds, then preallocated, then on
        // demand again: its rule goes and comes back.
        let chromium = request_form(
            "chromium",
            &[
                ("pool_kind", "community"),
                ("budget", "on_demand"),
                ("scope", ".*/.*/.*/chromium"),
            ],
        );
        assert_eq!(post_request(&mut alice, &chromium).await, "/requests/1");
        assert_eq!(act(&mut carol, 1, "approve", &[]).await.0, 303);
        assert_eq!(
            rules(&t).await,
            vec![(
                ".*/.*/.*/chromium".into(),
                r#"["on_demand_chromium"]"#.into()
            )]
        );
        let to = post_change(
            &mut alice,
            "chromium-x86_64",
            &[("budget", "preallocated"), ("prealloc", "1"), ("max", "2")],
        )
        .await;
        assert_eq!(to, "/requests/2");
        assert_eq!(act(&mut carol, 2, "approve", &[]).await.0, 303);
        assert!(
            rules(&t).await.is_empty(),
            "a preallocated community pool serves everyone"
        );
        let (pools, _) = copr_pools::pools::load_all(&t.db).await.unwrap();
        assert!(pools[0].tags_on_demand.is_empty() && pools[0].max_prealloc == 1);
        let to = post_change(
            &mut alice,
            "chromium-x86_64",
            &[("budget", "on_demand"), ("max", "2")],
        )
        .await;
        assert_eq!(act(&mut carol, 3, "approve", &[]).await.0, 303, "{to}");
        assert_eq!(
            rules(&t).await.len(),
            1,
            "on demand again: its rule is back"
        );

        // Two pools made by one request share the team tag: one cannot switch alone. A
        // change starts from the pool's own cap (half of the request's).
        let duo = request_form("duo", &[("arch_aarch64", "on")]);
        assert_eq!(post_request(&mut alice, &duo).await, "/requests/4");
        assert_eq!(act(&mut carol, 4, "approve", &[]).await.0, 303);
        let (_, _, html) = alice
            .get("/teams/team-a/requests/new?change=duo-x86_64")
            .await;
        assert!(
            html.contains(r#"value="500""#),
            "the pool's own cap: {html}"
        );
        let back = post_change(
            &mut alice,
            "duo-x86_64",
            &[("budget", "on_demand"), ("max", "2")],
        )
        .await;
        let (_, _, html) = alice.get(&back).await;
        assert!(
            html.contains("duo-aarch64 share this pool"),
            "siblings switch together: {html}"
        );
        let to = post_change(
            &mut alice,
            "duo-x86_64",
            &[("budget", "preallocated"), ("prealloc", "1"), ("max", "3")],
        )
        .await;
        let (_, _, html) = carol.get(&to).await;
        assert!(
            html.contains("$365.00 a month"),
            "one pool's estimate (1 ready × 730 h × $0.50), not two: {html}"
        );

        // A pool named like the request appeared meanwhile: approval is refused.
        let solo = request_form("solo", &[]);
        let to = post_request(&mut alice, &solo).await;
        let id: i32 = to.trim_start_matches("/requests/").parse().unwrap();
        copr_pools::pools::save(
            &t.db,
            &[crate::xmlrpc::local_pool("solo-x86_64", "10.0.0.1")],
            &copr_pools::audit::Actor::System,
        )
        .await
        .unwrap();
        let (_, _, html) = carol.get(&to).await;
        assert!(
            html.contains("approval is refused until it is gone"),
            "{html}"
        );
        let (status, body) = act(&mut carol, id, "approve", &[]).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body.contains("a pool named solo-x86_64 exists already"),
            "{body}"
        );
        let solo_pool = copr_pools::pools::load_all(&t.db)
            .await
            .unwrap()
            .0
            .into_iter()
            .find(|p| p.name == "solo-x86_64")
            .unwrap();
        assert_eq!(
            solo_pool.owner_team_id, None,
            "the existing pool is untouched"
        );
    })
    .await;
}
