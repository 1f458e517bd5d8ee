//! Tag routing for Copr: the polling API (tokens, ETags, 304, the Python form Copr's frontend
//! includes), the rules admins keep with the checks that keep builds from waiting forever,
//! the match endpoint, and the command line that migrates Copr's rules.

use axum::body::Body;
use copr_pools::audit::Actor;
use copr_pools::engine::model::{PoolConfig, Tag};
use sea_orm::EntityTrait;

use crate::auth::dev_config;
use crate::support::{Browser, TestApp, TestDb, copr_pools, each_db};

/// A pool offering `copr_builder`, `arch_x86_64` and `arch_aarch64`, and on demand `on_demand_powerful`.
async fn powerful_pool(t: &TestDb) {
    let mut p = PoolConfig::new("powerful", "true", "true");
    p.tags = vec![
        Tag::new("copr_builder", -40),
        Tag::new("arch_x86_64", 0),
        Tag::new("arch_aarch64", 0),
    ];
    p.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
    p.max_prealloc = 0;
    copr_pools::pools::save(&t.db, &[p], &Actor::System)
        .await
        .unwrap();
}

/// Posts a form with `token`; returns the page it redirects to.
async fn post(b: &mut Browser<'_>, path: &str, fields: Vec<(&str, &str)>, token: &str) -> String {
    let mut f = fields;
    f.push(("csrf_token", token));
    let (status, h, body) = b.post_form(path, &f).await;
    assert_eq!(status, 303, "{path}: {body}");
    let (_, _, html) = b.get(h["location"].to_str().unwrap()).await;
    html
}

pub(crate) async fn get_with(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.request(req.body(Body::empty()).unwrap()).await
}

/// The rules Python reads from a copr.conf text: exec'd by python3, printed as JSON.
fn python_reads(conf: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copr.conf");
    std::fs::write(&path, conf).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import json, sys; ns = {}; exec(open(sys.argv[1], encoding='utf-8').read(), ns); print(json.dumps(ns['EXTRA_BUILDCHROOT_TAGS']))")
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Copr frontend restarting opens many connections at once: its token is looked up in the
/// database once, not once per connection (each lookup may write the token's last use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_polls_with_a_new_token_looks_it_up_once() {
    each_db(|t| async move {
        let carol = Actor::User("carol".into());
        let prod = copr_pools::tokens::create(&t.db, &carol, "copr-prod")
            .await
            .unwrap();
        let stg = copr_pools::tokens::create(&t.db, &carol, "copr-stg")
            .await
            .unwrap();
        let memory = std::sync::Arc::new(copr_pools::tokens::TokenMemory::default());
        let checks: Vec<_> = (0..32)
            .map(|i| {
                let token = if i % 2 == 0 { &prod } else { &stg };
                let (memory, db, token) = (memory.clone(), t.db.clone(), token.clone());
                tokio::spawn(async move { memory.verify(&db, &token).await.unwrap() })
            })
            .collect();
        for (i, check) in checks.into_iter().enumerate() {
            let expected = if i % 2 == 0 { "copr-prod" } else { "copr-stg" };
            assert_eq!(check.await.unwrap().as_deref(), Some(expected));
        }
        assert_eq!(memory.looked_up(), 2, "each token once");
        // A wrong token is looked up (and not remembered); one that cannot be a token is not.
        assert_eq!(memory.verify(&t.db, "cpt_wrong").await.unwrap(), None);
        assert_eq!(memory.verify(&t.db, "cpt_wrong").await.unwrap(), None);
        assert_eq!(memory.verify(&t.db, "not-a-token").await.unwrap(), None);
        let long = format!("cpt_{}", "a".repeat(200));
        assert_eq!(memory.verify(&t.db, &long).await.unwrap(), None);
        assert_eq!(memory.looked_up(), 4);
    })
    .await;
}

#[tokio::test]
async fn copr_polls_the_rules_with_a_token_an_etag_and_304s() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        let admin = Actor::User("carol".into());
        let tricky = r#"^@python/python3\.\d+/.*/"root"$"#;
        for (pattern, tags) in [
            (
                "@asahi/kernel/.*(x86_64|aarch64)/kernel",
                vec!["on_demand_powerful"],
            ),
            (tricky, vec!["on_demand_powerful"]),
            ("@ünïcode/пакет/.*", vec!["arch_x86_64"]),
        ] {
            let spec = copr_pools::routing::RuleSpec {
                pattern: pattern.into(),
                tags: tags.into_iter().map(String::from).collect(),
                note: None,
            };
            copr_pools::routing::add(&t.db, &admin, spec, None, true)
                .await
                .unwrap();
        }
        let token = copr_pools::tokens::create(&t.db, &admin, "copr-prod")
            .await
            .unwrap();
        assert!(token.starts_with("cpt_"));
        let app = TestApp::with_config(&t, dev_config()).await;

        // No token, a wrong one: 401 with the way to get one.
        let (status, h, body) = get_with(&app, "/api/v1/routing", &[]).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert!(body.contains("copr-pools token create"), "{body}");
        let (status, _, _) = get_with(
            &app,
            "/api/v1/routing",
            &[("authorization", "Bearer cpt_wrong")],
        )
        .await;
        assert_eq!(status, 401);

        let auth = format!("Bearer {token}");
        let (status, h, body) =
            get_with(&app, "/api/v1/routing", &[("authorization", &auth)]).await;
        assert_eq!(status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let version = doc["version"].as_i64().unwrap();
        assert!(doc["generated_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(doc["rules"][1]["pattern"], tricky);
        assert_eq!(
            doc["rules"][0]["tags"],
            serde_json::json!(["on_demand_powerful"])
        );
        let etag = h["etag"].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && !etag.starts_with("W/"),
            "a strong ETag: {etag}"
        );
        let (status, h2, body) = get_with(
            &app,
            "/api/v1/routing",
            &[("authorization", &auth), ("if-none-match", &etag)],
        )
        .await;
        assert_eq!((status.as_u16(), body.as_str()), (304, ""));
        assert_eq!(h2["etag"].to_str().unwrap(), etag);
        // Answered before the router, with the headers every answer carries.
        assert_eq!(h2["x-frame-options"], "DENY");
        assert_eq!(h2["x-content-type-options"], "nosniff");
        assert_eq!(h2["cache-control"], "no-cache");
        let head = http::Request::head("/api/v1/routing")
            .header("authorization", &auth)
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, h3, _) = app.request(head).await;
        assert_eq!(status, 200);
        assert_eq!(h3["etag"].to_str().unwrap(), etag);
        let post = http::Request::post("/api/v1/routing")
            .header("authorization", &auth)
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, h3, _) = app.request(post).await;
        assert_eq!((status.as_u16(), h3["allow"].to_str().unwrap()), (405, "GET,HEAD"));

        // The Python form: what Python reads from it is the JSON form's rules.
        let (status, h, conf) = get_with(
            &app,
            "/api/v1/routing/copr.conf",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(status, 200);
        assert_ne!(
            h["etag"].to_str().unwrap(),
            etag,
            "each form has its own ETag"
        );
        assert_eq!(python_reads(&conf), doc["rules"]);
        let py_etag = h["etag"].to_str().unwrap().to_string();
        let (status, _, _) = get_with(
            &app,
            "/api/v1/routing/copr.conf",
            &[("authorization", &auth), ("if-none-match", &py_etag)],
        )
        .await;
        assert_eq!(status, 304);

        // A change makes a new version: the old ETag gets the new rules.
        let spec = copr_pools::routing::RuleSpec {
            pattern: "@llvm/big/.*".into(),
            tags: vec!["on_demand_powerful".into()],
            note: None,
        };
        copr_pools::routing::add(&t.db, &admin, spec, Some(1), true)
            .await
            .unwrap();
        // Another process changed the rules: served within routing_refresh_ms (1 s here).
        let client = &app;
        let body = crate::support::eventually(
            "the new version to be served",
            std::time::Duration::from_secs(10),
            || async {
                let (status, _, body) = get_with(
                    client,
                    "/api/v1/routing",
                    &[("authorization", &auth), ("if-none-match", &etag)],
                )
                .await;
                (status == 200).then_some(body)
            },
        )
        .await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["version"].as_i64().unwrap(), version + 1);
        assert_eq!(
            doc["rules"][0]["pattern"], "@llvm/big/.*",
            "added at place 1"
        );

        // Fetches are counted by token, format and status.
        let (_, metrics) = app.get("/metrics").await;
        for line in [
            r#"copr_pools_routing_fetches_total{token="copr-prod",format="json",status="304"} 1"#,
            r#"copr_pools_routing_fetches_total{token="copr-prod",format="python",status="200"} 1"#,
            r#"copr_pools_routing_fetches_total{token="none",format="json",status="401"} 2"#,
            // Counted by route like every other request.
            r#"copr_pools_http_requests_total{route="/api/v1/routing",method="GET",status="304"} "#,
            r#"copr_pools_http_requests_total{route="/api/v1/routing",method="POST",status="405"} 1"#,
            r#"copr_pools_http_request_duration_seconds_count{route="/api/v1/routing/copr.conf"} 2"#,
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }

        // An admin revokes the token on the page: it stops working at once.
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let form = carol.form_token("/admin/tokens").await;
        let (status, _, _) = carol
            .post_form("/admin/tokens/copr-prod/revoke", &[("csrf_token", &form)])
            .await;
        assert_eq!(status, 303);
        let (status, _, _) = get_with(&app, "/api/v1/routing", &[("authorization", &auth)]).await;
        assert_eq!(status, 401, "revoked");
        let (_, _, html) = carol.get("/admin/tokens").await;
        assert!(html.contains("revoked") && !html.contains(&token), "{html}");
    })
    .await;
}

#[tokio::test]
async fn admins_keep_rules_that_never_strand_a_build() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut carol = Browser::new(&app);
        carol.dev_sign_in("carol", &["copr-admins"]).await;
        let (_, _, html) = carol.get("/admin/routing").await;
        assert!(html.contains(r#"data-testid="no-rules""#), "{html}");
        let token = carol.form_token("/admin/routing").await;
        let add = |pattern: &'static str, tags: &'static str, accept: bool| {
            let mut f = vec![("pattern", pattern), ("tags", tags), ("note", "copr#2966")];
            if accept {
                f.push(("accept_warnings", "on"));
            }
            f
        };

        // Refused: a tag no active pool offers, a construct Python reads differently.
        let html = post(&mut carol, "/admin/routing", add("@asahi/kernel/.*", "on_demand_huge", false), &token).await;
        assert!(html.contains("No active pool offers on_demand_huge"), "{html}");
        assert!(html.contains(r#"value="@asahi/kernel/.*""#), "what was typed is kept: {html}");
        let html = post(&mut carol, "/admin/routing", add("(?i)kernel/.*", "on_demand_powerful", false), &token).await;
        assert!(html.contains("inline flags"), "{html}");
        // A broad pattern needs the warning accepted.
        let html = post(&mut carol, "/admin/routing", add(".*/.*/.*/chromium", "on_demand_powerful", false), &token).await;
        assert!(html.contains("sends many unrelated builds") && html.contains("I have read the warnings"), "{html}");
        let html = post(&mut carol, "/admin/routing", add(".*/.*/.*/chromium", "on_demand_powerful", true), &token).await;
        assert!(html.contains("Rule added."), "{html}");
        let html = post(&mut carol, "/admin/routing", add("@asahi/kernel/.*(x86_64|aarch64)/kernel", "on_demand_powerful", false), &token).await;
        assert!(html.contains("Rule added."), "{html}");
        // Rules that can match one build together and overflow Copr's 50 characters.
        let html = post(
            &mut carol,
            "/admin/routing",
            add("@asahi/kernel/.*", "on_demand_powerful arch_x86_64 arch_aarch64 copr_builder", false),
            &token,
        )
        .await;
        assert!(html.contains("over the 50 Copr stores"), "{html}");

        // The tester, and the match API with a session.
        let (_, _, html) = carol
            .get("/admin/routing?owner=@asahi&project=kernel&chroot=fedora-41-aarch64&package=kernel")
            .await;
        assert!(html.contains(r#"data-testid="route-table""#) && html.contains("<strong>powerful</strong>"), "{html}");
        let (status, _, body) = carol
            .get("/api/v1/routing/match?owner=@asahi&project=kernel:pr:7&chroot=fedora-41-aarch64&package=kernel")
            .await;
        assert_eq!(status, 200, "{body}");
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(m["build"], "@asahi/kernel:pr:7/fedora-41-aarch64/kernel");
        assert_eq!(m["tags"], serde_json::json!([]), "kernel/ does not match kernel:pr:7/");
        let (_, _, body) = carol
            .get("/api/v1/routing/match?owner=@asahi&project=kernel&chroot=fedora-41-aarch64&package=kernel")
            .await;
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(m["tags"], serde_json::json!(["on_demand_powerful"]));
        assert_eq!(m["rules"][0]["position"], 2);
        let (status, _, body) = carol.get("/api/v1/routing/match?owner=@a&project=&chroot=x&package=y").await;
        assert_eq!(status, 422, "{body}");

        // Move, disable, enable, edit, delete; each bumps the version and is audited.
        let rules = copr_pools::routing::list(&t.db).await.unwrap();
        let (first, second) = (rules[0].id, rules[1].id);
        let (v0, _) = copr_pools::routing::version(&t.db).await.unwrap();
        post(&mut carol, &format!("/admin/routing/{second}/move"), vec![("position", "1")], &token).await;
        let html = post(&mut carol, &format!("/admin/routing/{first}/enabled"), vec![("enabled", "off")], &token).await;
        assert!(html.contains("Rule disabled."), "{html}");
        post(&mut carol, &format!("/admin/routing/{first}/enabled"), vec![("enabled", "on"), ("accept_warnings", "on")], &token).await;
        let html = post(
            &mut carol,
            &format!("/admin/routing/{second}"),
            vec![("pattern", "@asahi/kernel[^/]*/.*(x86_64|aarch64)/kernel"), ("tags", "on_demand_powerful"), ("note", "")],
            &token,
        )
        .await;
        assert!(html.contains(&format!("Rule {second} saved.")), "{html}");
        let rules = copr_pools::routing::list(&t.db).await.unwrap();
        assert_eq!(rules[0].pattern, "@asahi/kernel[^/]*/.*(x86_64|aarch64)/kernel");
        post(&mut carol, &format!("/admin/routing/{first}/delete"), vec![], &token).await;
        let (v1, _) = copr_pools::routing::version(&t.db).await.unwrap();
        assert_eq!(v1, v0 + 5);
        let (_, _, html) = carol.get("/admin").await;
        for action in ["routing.add", "routing.move", "routing.disable", "routing.enable", "routing.edit", "routing.delete"] {
            assert!(html.contains(action), "{action} audited");
        }

        // Pausing the only pool that offers a routed tag says which rules it strands.
        let pause = carol.form_token("/admin").await;
        let (_, h, _) = carol
            .post_form(
                "/pools/powerful/state",
                &[("csrf_token", pause.as_str()), ("state", "paused"), ("back", "/admin")],
            )
            .await;
        let (_, _, html) = carol.get(h["location"].to_str().unwrap()).await;
        assert!(html.contains("now routes builds to tags no active pool offers"), "{html}");

        // Members: no rules pages, no rule posts; the match API is for signed-in users.
        let mut dana = Browser::new(&app);
        dana.dev_sign_in("dana", &["team-a"]).await;
        assert_eq!(dana.get("/admin/routing").await.0, 403);
        let member_token = dana.form_token("/teams/team-a/credentials/new").await;
        let (status, _, _) = dana
            .post_form("/admin/routing", &[("csrf_token", member_token.as_str()), ("pattern", "@x/.*"), ("tags", "copr_builder")])
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            app.get("/api/v1/routing/match?owner=a&project=b&chroot=c&package=d").await.0,
            401
        );
    })
    .await;
}

#[tokio::test]
async fn coprs_rules_migrate_in_one_command() {
    each_db(|t| async move {
        powerful_pool(&t).await;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("copr.conf");
        std::fs::write(
            &conf,
            r#"# /etc/copr/copr.conf
FRONTEND_BASE_URL = "https://copr.fedorainfracloud.org"
EXTRA_BUILDCHROOT_TAGS = [{
    # https://github.com/fedora-copr/copr/issues/2966
    "pattern": "@asahi/kernel/.*(x86_64|aarch64)/kernel",
    "tags": ["on_demand_powerful"],
}, {
    "pattern": r"^@python/python3\.\d+/.*/root$",
    "tags": ["on_demand_powerful"],
}, {
    "pattern": "@fedora-llvm-team/.*",
    "tags": ["on_demand_powerful"],
}]
"#,
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = copr_pools(&t, &[]).args(args).output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let c = conf.to_str().unwrap();
        let (ok, out, _) = run(&["routing", "import", c, "--dry-run"]);
        assert!(ok && out.contains("3 rule(s) would add"), "{out}");
        assert!(
            copr_pools::routing::list(&t.db).await.unwrap().is_empty(),
            "a dry run writes nothing"
        );
        let (ok, _, err) = run(&["routing", "import", c]);
        assert!(
            !ok && err.contains("--accept-warnings") && err.contains("@fedora-llvm-team/.*"),
            "{err}"
        );
        let (ok, out, _) = run(&["routing", "import", c, "--accept-warnings"]);
        assert!(ok && out.contains("3 rule(s) added"), "{out}");
        let (ok, out, _) = run(&["routing", "import", c, "--accept-warnings"]);
        assert!(
            ok && out.contains("0 rule(s) added, 3 already present"),
            "{out}"
        );
        let (ok, py, _) = run(&["routing", "export", "--format", "python"]);
        assert!(ok);
        let back = python_reads(&py);
        assert_eq!(back[1]["pattern"], r"^@python/python3\.\d+/.*/root$");
        let (ok, json, _) = run(&["routing", "export"]);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(ok && doc["rules"] == back);

        // A file with an error imports nothing.
        std::fs::write(
            &conf,
            r#"EXTRA_BUILDCHROOT_TAGS = [{"pattern": "(?=x)", "tags": ["on_demand_powerful"]}]"#,
        )
        .unwrap();
        let (ok, _, err) = run(&["routing", "import", c, "--accept-warnings"]);
        assert!(
            !ok && err.contains("look-ahead") && err.contains("nothing was imported"),
            "{err}"
        );

        // Tokens: shown once, listed by their last characters, revoked by name.
        let (ok, token, _) = run(&["token", "create", "copr-stg"]);
        let token = token.trim().to_string();
        assert!(ok && token.starts_with("cpt_"), "{token}");
        let (ok, list, _) = run(&["token", "list"]);
        assert!(
            ok && list.contains("copr-stg")
                && list.contains(&token[token.len() - 4..])
                && !list.contains(&token)
        );
        let (ok, _, _) = run(&["token", "revoke", "copr-stg"]);
        assert!(ok);
        let (_, list, _) = run(&["token", "list"]);
        assert!(list.contains("REVOKED"), "{list}");
        let stored = copr_pools::entities::api_tokens::Entity::find()
            .all(&t.db)
            .await
            .unwrap();
        assert!(
            stored
                .iter()
                .all(|s| s.token_hash != token && !s.token_hash.contains(&token[4..]))
        );
    })
    .await;
}
