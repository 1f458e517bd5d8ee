//! The sign-in callback against a real OpenID provider (npm's oidc-provider, end2end/idp):
//! the happy path, and every way it can fail — provider refusal, bad state, replayed code,
//! wrong nonce, wrong issuer, unreachable provider. A test drives the redirects itself, like a
//! browser with a cookie jar per host.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use copr_pools::auth::session::Store;
use copr_pools::config::Config;
use copr_pools::engine::Engine;
use copr_pools::web::{AppState, app};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{Kind, TestDb, engine_settings, eventually, free_port, repo_root};

struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_idp(redirect: &str) -> Idp {
    let dir = repo_root().join("end2end");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the test OIDC provider needs `npm ci` in end2end/ (scripts/setup.sh does it)"
    );
    let port = free_port();
    let child = Command::new("node")
        .arg("idp/idp.mjs")
        .current_dir(&dir)
        .env("IDP_PORT", port.to_string())
        .env("REDIRECT_URIS", redirect)
        .env("CLIENT_ID", "test-app")
        .env("CLIENT_SECRET", "test-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs the test provider");
    let issuer = format!("http://127.0.0.1:{port}");
    let idp = Idp {
        child,
        issuer: issuer.clone(),
    };
    let url = format!("{issuer}/.well-known/openid-configuration");
    eventually("the provider to answer", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
    idp
}

/// The app on a real loopback port, configured for the provider.
struct App {
    base: String,
    stop: CancellationToken,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_app(t: &TestDb, issuer: &str, port: u16) -> App {
    let mut config = Config::load_from(
        None,
        [
            ("COPR_POOLS_OIDC_ISSUER", issuer.to_string()),
            ("COPR_POOLS_OIDC_CLIENT_ID", "test-app".into()),
            ("COPR_POOLS_OIDC_CLIENT_SECRET", "test-secret".into()),
            (
                "COPR_POOLS_OIDC_REDIRECT_URL",
                format!("http://127.0.0.1:{port}/auth/callback"),
            ),
            ("COPR_POOLS_ADMIN_GROUPS", "app-admins".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .expect("a valid OIDC configuration");
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
    let store = Store::new(&t.db, t.settings.schema.as_deref())
        .await
        .unwrap();
    let app = app(
        AppState::new(
            Arc::new(config),
            t.db.clone(),
            engine,
            crate::support::vault(t),
        ),
        &store,
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(app))
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    App {
        base: format!("http://127.0.0.1:{port}"),
        stop,
    }
}

/// A browser: follows nothing by itself, keeps cookies per host:port.
struct Agent {
    http: reqwest::Client,
    jars: BTreeMap<String, BTreeMap<String, String>>,
}

impl Agent {
    fn new() -> Agent {
        Agent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: BTreeMap::new(),
        }
    }

    fn host(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!(
            "{}:{}",
            u.host_str().unwrap(),
            u.port_or_known_default().unwrap()
        )
    }

    /// GET `url`; returns the status, the Location (absolute) and the body.
    async fn get(&mut self, url: &str) -> (u16, Option<String>, String) {
        let host = Self::host(url);
        let cookies = self.jars.get(&host).map(|j| {
            j.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let mut req = self.http.get(url).header("accept", "text/html");
        if let Some(c) = cookies.filter(|c| !c.is_empty()) {
            req = req.header("cookie", c);
        }
        let res = req.send().await.unwrap();
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (k, v) = c.split(';').next().unwrap().split_once('=').unwrap();
            self.jars
                .entry(host.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|l| {
            url::Url::parse(url)
                .unwrap()
                .join(l.to_str().unwrap())
                .unwrap()
                .to_string()
        });
        (status, location, res.text().await.unwrap())
    }

    /// Follows redirects from `url` until one leads to `stop_prefix` (not followed), and
    /// returns that URL; `edit` may rewrite each URL before it is requested.
    async fn follow_until(
        &mut self,
        url: &str,
        stop_prefix: &str,
        edit: impl Fn(String) -> String,
    ) -> String {
        let mut next = url.to_string();
        for _ in 0..15 {
            let (_, location, body) = self.get(&edit(next.clone())).await;
            let location = location.unwrap_or_else(|| panic!("no redirect from {next}: {body}"));
            if location.starts_with(stop_prefix) {
                return location;
            }
            next = location;
        }
        panic!("too many redirects from {url}");
    }
}

fn set_query(url: &str, key: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let mut pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push((key.to_string(), value.to_string()));
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

struct Rig {
    _t: TestDb,
    idp: Idp,
    app: App,
}

async fn rig() -> Rig {
    let t = TestDb::new(Kind::Sqlite).await;
    let port = free_port();
    let idp = start_idp(&format!("http://127.0.0.1:{port}/auth/callback")).await;
    let app = start_app(&t, &idp.issuer, port).await;
    Rig { _t: t, idp, app }
}

/// Starts a sign-in at the app and follows it to the callback URL the provider sends back.
async fn to_callback(
    agent: &mut Agent,
    rig: &Rig,
    user: &str,
    edit: impl Fn(String) -> String,
) -> String {
    let start = format!("{}/auth/login?next=%2Fteams", rig.app.base);
    let callback_prefix = format!("{}/auth/callback", rig.app.base);
    agent
        .follow_until(&start, &callback_prefix, |u| {
            let u = if u.starts_with(&format!("{}/auth?", rig.idp.issuer)) {
                set_query(&u, "login_hint", user)
            } else {
                u
            };
            edit(u)
        })
        .await
}

/// Calls the callback and returns where the app sends the browser.
async fn finish(agent: &mut Agent, callback: &str) -> String {
    let (status, location, body) = agent.get(callback).await;
    assert_eq!(status, 303, "{body}");
    location.unwrap()
}

fn reason(location: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn me(agent: &mut Agent, rig: &Rig) -> (u16, Value) {
    let (status, _, body) = agent.get(&format!("{}/api/v1/me", rig.app.base)).await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test]
async fn signing_in_reads_username_and_groups_from_userinfo() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let callback = to_callback(&mut agent, &rig, "alice", |u| u).await;
    assert!(
        callback.contains("iss="),
        "the provider sends RFC 9207's iss, which must be accepted"
    );
    let landed = finish(&mut agent, &callback).await;
    assert_eq!(
        landed,
        format!("{}/teams", rig.app.base),
        "back where the user was going"
    );
    let (status, me) = me(&mut agent, &rig).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["admin"], true, "app-admins is an admin group here");
    assert_eq!(
        me["groups"],
        serde_json::json!(["packager", "team-a", "app-admins"])
    );
    let (status, _, html) = agent.get(&format!("{}/teams", rig.app.base)).await;
    assert_eq!(status, 200);
    assert!(html.contains("team-a"));
}

#[tokio::test]
async fn a_refusal_at_the_provider_is_explained() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let callback = to_callback(&mut agent, &rig, "nobody", |u| u).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let landed = finish(&mut agent, &callback).await;
    assert_eq!(reason(&landed), "denied");
    let (status, _, html) = agent.get(&landed).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("unknown test user nobody"),
        "the provider's words reach the page"
    );
    assert!(html.contains("Try again"));
    assert_eq!(me(&mut agent, &rig).await.0, 401);
}

#[tokio::test]
async fn a_forged_state_is_refused() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let callback = to_callback(&mut agent, &rig, "alice", |u| u).await;
    let forged = set_query(&callback, "state", "forged-state");
    assert_eq!(reason(&finish(&mut agent, &forged).await), "state");
    assert_eq!(me(&mut agent, &rig).await.0, 401);
    // A forged answer does not use the attempt up, so it cannot cancel the real sign-in.
    let landed = finish(&mut agent, &callback).await;
    assert_eq!(landed, format!("{}/teams", rig.app.base));
    assert_eq!(me(&mut agent, &rig).await.0, 200);
    // But the attempt is single use: replaying the genuine answer fails.
    let mut replayer = Agent {
        http: agent.http.clone(),
        jars: agent.jars.clone(),
    };
    assert_eq!(reason(&finish(&mut replayer, &callback).await), "attempt");
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let callback = to_callback(&mut agent, &rig, "alice", |u| u).await;
    finish(&mut agent, &callback).await;
    assert_eq!(me(&mut agent, &rig).await.0, 200);

    // Someone replays the old code inside a fresh attempt (so the state matches): the
    // provider refuses the code and nobody is signed in.
    let mut thief = Agent::new();
    let fresh = to_callback(&mut thief, &rig, "bob", |u| u).await;
    let old_code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let replay = set_query(&fresh, "code", &old_code);
    assert_eq!(reason(&finish(&mut thief, &replay).await), "provider");
    assert_eq!(me(&mut thief, &rig).await.0, 401);
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let issuer = rig.idp.issuer.clone();
    let callback = to_callback(&mut agent, &rig, "alice", move |u| {
        if u.starts_with(&format!("{issuer}/auth?")) {
            set_query(&u, "nonce", "a-nonce-the-app-never-made")
        } else {
            u
        }
    })
    .await;
    assert_eq!(reason(&finish(&mut agent, &callback).await), "token");
    assert_eq!(me(&mut agent, &rig).await.0, 401);
}

#[tokio::test]
async fn an_answer_from_another_issuer_is_refused() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let callback = to_callback(&mut agent, &rig, "alice", |u| u).await;
    let tampered = set_query(&callback, "iss", "https://evil.example/");
    assert_eq!(reason(&finish(&mut agent, &tampered).await), "issuer");
    assert_eq!(me(&mut agent, &rig).await.0, 401);
}

#[tokio::test]
async fn the_failure_page_cannot_be_given_words_by_a_link() {
    let rig = rig().await;
    let mut agent = Agent::new();
    let (status, _, html) = agent
        .get(&format!(
            "{}/auth/failed?reason=denied&detail=Call+0800+SCAM&next=https%3A%2F%2Fevil.example",
            rig.app.base
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("SCAM"),
        "text from the address is never shown"
    );
    assert!(
        !html.contains("evil.example"),
        "Try again stays on this site"
    );
    // A callback that is not this browser's attempt changes nothing.
    let (status, location, _) = agent
        .get(&format!(
            "{}/auth/callback?error=access_denied&error_description=SCAM",
            rig.app.base
        ))
        .await;
    assert_eq!(status, 303);
    assert_eq!(reason(&location.unwrap()), "attempt");
}

#[tokio::test]
async fn a_provider_that_is_not_the_configured_issuer_is_refused() {
    // Fedora's issuer ends in a slash and openidconnect compares issuers exactly: a
    // configuration off by that slash must fail loudly, not sign anyone in.
    let t = TestDb::new(Kind::Sqlite).await;
    let port = free_port();
    let idp = start_idp(&format!("http://127.0.0.1:{port}/auth/callback")).await;
    let app = start_app(&t, &format!("{}/", idp.issuer), port).await;
    let mut agent = Agent::new();
    let (status, location, _) = agent.get(&format!("{}/auth/login", app.base)).await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert_eq!(reason(&location), "config", "{location}");
    let (_, _, html) = agent.get(&location).await;
    assert!(html.contains("sign-in settings"), "{html}");
}

#[tokio::test]
async fn an_unreachable_provider_is_explained() {
    let t = TestDb::new(Kind::Sqlite).await;
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let app = start_app(&t, &dead, port).await;
    let mut agent = Agent::new();
    let (status, location, _) = agent
        .get(&format!("{}/auth/login?next=%2Fadmin", app.base))
        .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert_eq!(reason(&location), "unreachable", "{location}");
    let (_, _, html) = agent.get(&location).await;
    assert!(html.contains("could not be reached"), "{html}");
    assert!(
        html.contains("/auth/login?next=%2Fadmin"),
        "Try again returns to where the user was going"
    );
}
