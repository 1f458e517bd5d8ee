//! The OpenAPI document of `/api/v1`: every `/api/v1` path the server's source names is in
//! it, and what the API answers (statuses and JSON bodies) matches it.

use std::collections::BTreeSet;

use copr_pools::audit::Actor;
use copr_pools::engine::model::{PoolConfig, Tag};
use serde_json::{Value, json};

use crate::auth::dev_config;
use crate::routing::get_with as get;
use crate::support::{TestApp, each_db, repo_root};

/// Every `"/api/v1…"` string literal in the web modules: routes and their documentation.
fn paths_in_source() -> BTreeSet<String> {
    let literal = regex::Regex::new(r#""(/api/v1[^"\s]*)""#).unwrap();
    let dir = repo_root().join("server/src/web");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for c in literal.captures_iter(&text) {
            found.insert(c[1].to_string());
        }
    }
    found
}

/// Checks `body` against the schema the document gives `path`'s answer `status`.
fn check(doc: &Value, path: &str, status: u16, content_type: Option<&str>, body: &str) {
    let response = &doc["paths"][path]["get"]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "GET {path} answered {status}, which the document does not list: {body}"
    );
    let Some(content_type) = content_type else {
        assert!(
            response["content"].is_null(),
            "{path} {status}: no body, as documented"
        );
        return;
    };
    let media = content_type.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "GET {path} {status} answered {media}, which the document does not list: {response}"
    );
    if media != "application/json" {
        return;
    }
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("{path} {status}: the schema does not compile: {e}"));
    let instance: Value = serde_json::from_str(body).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "GET {path} {status} does not match the document: {errors:?}\n{body}"
    );
}

/// A request: the documented path, the URI, headers, the status expected.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16);

#[tokio::test]
async fn every_route_is_documented_and_answers_as_documented() {
    each_db(|t| async move {
        let mut p = PoolConfig::new("powerful", "true", "true");
        p.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
        p.tags_on_demand = vec![Tag::new("on_demand_powerful", 0)];
        copr_pools::pools::save(&t.db, &[p], &Actor::System)
            .await
            .unwrap();
        let admin = Actor::User("carol".into());
        let spec = copr_pools::routing::RuleSpec {
            pattern: "@asahi/kernel/.*(x86_64|aarch64)/kernel".into(),
            tags: vec!["on_demand_powerful".into()],
            note: None,
        };
        copr_pools::routing::add(&t.db, &admin, spec, None, true)
            .await
            .unwrap();
        let token = copr_pools::tokens::create(&t.db, &admin, "copr-prod")
            .await
            .unwrap();
        let ticket = copr_pools::engine::tickets::take(
            &t.db,
            vec!["copr_builder".into()],
            Some("@asahi/kernel--marcan".into()),
        )
        .await
        .unwrap();
        let app = TestApp::with_config(&t, dev_config()).await;

        let (status, text) = app.get("/api/v1/openapi.json").await;
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");

        let documented: BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let in_source = paths_in_source();
        assert!(in_source.len() >= 6, "{in_source:?}");
        let missing: Vec<&String> = in_source.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );

        let bearer = format!("Bearer {token}");
        let (_, headers, _) = get(&app, "/api/v1/routing", &[("authorization", &bearer)]).await;
        let etag = headers["etag"].to_str().unwrap().to_string();
        let build = "owner=@asahi&project=kernel&chroot=fedora-41-aarch64&package=kernel";
        let cases: Vec<Case> = vec![
            (
                "/api/v1/routing",
                "/api/v1/routing".into(),
                vec![("authorization", &bearer)],
                200,
            ),
            ("/api/v1/routing", "/api/v1/routing".into(), vec![], 401),
            (
                "/api/v1/routing",
                "/api/v1/routing".into(),
                vec![("authorization", &bearer), ("if-none-match", &etag)],
                304,
            ),
            (
                "/api/v1/routing/copr.conf",
                "/api/v1/routing/copr.conf".into(),
                vec![("authorization", &bearer)],
                200,
            ),
            (
                "/api/v1/routing/match",
                format!("/api/v1/routing/match?{build}"),
                vec![("authorization", &bearer)],
                200,
            ),
            (
                "/api/v1/routing/match",
                "/api/v1/routing/match?owner=@asahi".into(),
                vec![("authorization", &bearer)],
                422,
            ),
            (
                "/api/v1/routing/match",
                format!("/api/v1/routing/match?{build}"),
                vec![],
                401,
            ),
            (
                "/api/v1/tickets/{id}",
                format!("/api/v1/tickets/{ticket}"),
                vec![],
                200,
            ),
            (
                "/api/v1/tickets/{id}",
                "/api/v1/tickets/abc".into(),
                vec![],
                400,
            ),
            (
                "/api/v1/tickets/{id}",
                "/api/v1/tickets/99999999".into(),
                vec![],
                404,
            ),
            (
                "/api/v1/tickets",
                "/api/v1/tickets?q=%40asahi".into(),
                vec![],
                200,
            ),
            ("/api/v1/tickets", "/api/v1/tickets?q=".into(), vec![], 400),
            (
                "/api/v1/openapi.json",
                "/api/v1/openapi.json".into(),
                vec![],
                200,
            ),
        ];
        let mut exercised = BTreeSet::new();
        for (path, uri, headers, expected) in &cases {
            let (status, h, body) = get(&app, uri, headers).await;
            assert_eq!(status.as_u16(), *expected, "GET {uri}: {body}");
            let content_type = h
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            check(&doc, path, status.as_u16(), content_type.as_deref(), &body);
            exercised.insert(path.to_string());
        }
        let untested: Vec<&String> = documented.difference(&exercised).collect();
        assert!(
            untested.is_empty(),
            "documented but not exercised here: {untested:?}"
        );
    })
    .await;
}
