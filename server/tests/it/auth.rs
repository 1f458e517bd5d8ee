//! Signing in (development sign-in), sessions, teams from groups, the authorization matrix of
//! every route, and CSRF.

use copr_pools::audit::Actor;
use copr_pools::config::Config;
use copr_pools::engine::model::PoolConfig;
use copr_pools::entities::audit_events;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::Value;

use crate::support::{Browser, TestApp, each_db};

pub fn dev_config() -> Config {
    Config {
        dev_login: true,
        admin_groups: vec!["copr-admins".into()],
        ..Config::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persona {
    Anonymous,
    OtherTeam,
    Member,
    Admin,
}

async fn browser_as<'a>(app: &'a TestApp, who: Persona) -> Browser<'a> {
    let mut b = Browser::new(app);
    match who {
        Persona::Anonymous => {}
        Persona::OtherTeam => b.dev_sign_in("bob", &["team-b", "packager"]).await,
        Persona::Member => b.dev_sign_in("alice", &["team-a", "packager"]).await,
        Persona::Admin => b.dev_sign_in("carol", &["copr-admins"]).await,
    }
    b
}

/// What a route answers: a status, and for redirects where to.
fn outcome(status: http::StatusCode, headers: &http::HeaderMap) -> String {
    match headers.get("location") {
        Some(l) if status.is_redirection() => {
            format!("{} {}", status.as_u16(), l.to_str().unwrap())
        }
        _ => status.as_u16().to_string(),
    }
}

#[tokio::test]
async fn authorization_matrix_of_every_route() {
    use Persona::*;
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        // team-a must exist for the team page: alice's first sign-in creates it.
        browser_as(&app, Member).await;
        let demo = crate::support::vault(&t)
            .create(
                &Actor::User("alice".into()),
                "team-a",
                copr_pools::credentials::NewCredential {
                    kind: "local",
                    variant: None,
                    name: "demo",
                    input: &Default::default(),
                },
                true,
            )
            .await
            .unwrap();
        assert_eq!(demo, 1);
        let login = |next: &str| format!("302 /auth/login?next={next}");
        let rows: Vec<(&str, &str, [String; 4])> = vec![
            (
                "GET",
                "/",
                ["200".into(), "200".into(), "200".into(), "200".into()],
            ),
            (
                "GET",
                "/teams",
                [login("%2Fteams"), "200".into(), "200".into(), "200".into()],
            ),
            (
                "GET",
                "/teams/team-a",
                [
                    login("%2Fteams%2Fteam-a"),
                    "403".into(),
                    "200".into(),
                    "200".into(),
                ],
            ),
            (
                "GET",
                "/admin",
                [login("%2Fadmin"), "403".into(), "403".into(), "200".into()],
            ),
            (
                "GET",
                "/api/v1/me",
                ["401".into(), "200".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/status",
                ["200".into(), "200".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/session",
                ["200".into(), "200".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/my_teams",
                ["401".into(), "200".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/team?name=team-a",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/admin_overview",
                ["401".into(), "403".into(), "403".into(), "200".into()],
            ),
            (
                "GET",
                "/teams/team-a/credentials/new",
                [
                    login("%2Fteams%2Fteam-a%2Fcredentials%2Fnew"),
                    "403".into(),
                    "200".into(),
                    "200".into(),
                ],
            ),
            (
                "GET",
                "/teams/team-a/credentials/1",
                [
                    login("%2Fteams%2Fteam-a%2Fcredentials%2F1"),
                    "403".into(),
                    "200".into(),
                    "200".into(),
                ],
            ),
            (
                "POST",
                "/api/ui/credentials?team=team-a",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/new_credential?team=team-a",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/credential?team=team-a&id=1",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "GET",
                "/teams/team-a/requests/new",
                [
                    login("%2Fteams%2Fteam-a%2Frequests%2Fnew"),
                    "403".into(),
                    "200".into(),
                    "200".into(),
                ],
            ),
            (
                "GET",
                "/admin/requests",
                [
                    login("%2Fadmin%2Frequests"),
                    "403".into(),
                    "403".into(),
                    "200".into(),
                ],
            ),
            (
                "GET",
                "/admin/prices",
                [
                    login("%2Fadmin%2Fprices"),
                    "403".into(),
                    "403".into(),
                    "200".into(),
                ],
            ),
            (
                "POST",
                "/api/ui/request_form?team=team-a",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/team_requests?team=team-a",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/request_queue",
                ["401".into(), "403".into(), "403".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/price_list",
                ["401".into(), "403".into(), "403".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/request?id=1",
                ["401".into(), "404".into(), "404".into(), "404".into()],
            ),
            (
                "POST",
                "/teams/team-a/requests",
                [
                    "303 /auth/login?next=%2Fteams%2Fteam-a%2Frequests%2Fnew%3Fcredential%3D"
                        .into(),
                    "403".into(),
                    "400".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/admin/prices",
                [
                    "303 /auth/login?next=%2Fadmin%2Fprices".into(),
                    "403".into(),
                    "403".into(),
                    "400".into(),
                ],
            ),
            (
                "GET",
                "/admin/routing",
                [login("%2Fadmin%2Frouting"), "403".into(), "403".into(), "200".into()],
            ),
            (
                "GET",
                "/admin/tokens",
                [login("%2Fadmin%2Ftokens"), "403".into(), "403".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/tokens",
                ["401".into(), "403".into(), "403".into(), "200".into()],
            ),
            (
                "POST",
                "/api/ui/route_preview?ask[team]=team-a&ask[builds]=@team-a/p/fedora-rawhide-x86_64/x",
                ["401".into(), "403".into(), "200".into(), "200".into()],
            ),
            (
                "POST",
                "/admin/routing",
                [
                    "303 /auth/login?next=%2Fadmin%2Frouting".into(),
                    "403".into(),
                    "403".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/admin/routing/1/delete",
                [
                    "303 /auth/login?next=%2Fadmin%2Frouting".into(),
                    "403".into(),
                    "403".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/admin/tokens",
                [
                    "303 /auth/login?next=%2Fadmin%2Ftokens".into(),
                    "403".into(),
                    "403".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/admin/tokens/copr-prod/revoke",
                [
                    "303 /auth/login?next=%2Fadmin%2Ftokens".into(),
                    "403".into(),
                    "403".into(),
                    "400".into(),
                ],
            ),
            // Naming team-a's credential under another team finds nothing.
            (
                "POST",
                "/api/ui/credential?team=team-b&id=1",
                ["401".into(), "404".into(), "403".into(), "404".into()],
            ),
            // Changes: a visitor is sent to sign in, another team refused before anything is
            // read, members and admins need the form's token.
            (
                "POST",
                "/teams/team-a/credentials",
                [
                    "303 /auth/login?next=%2Fteams%2Fteam-a%2Fcredentials%2Fnew%3Fkind%3D".into(),
                    "403".into(),
                    "400".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/teams/team-a/credentials/1/rename?name=stolen",
                [
                    "303 /auth/login?next=%2Fteams%2Fteam-a%2Fcredentials%2F1".into(),
                    "403".into(),
                    "400".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/teams/team-a/credentials/1/secret",
                [
                    "303 /auth/login?next=%2Fteams%2Fteam-a%2Fcredentials%2F1".into(),
                    "403".into(),
                    "400".into(),
                    "400".into(),
                ],
            ),
            (
                "POST",
                "/teams/team-a/credentials/1/revoke?confirm=yes",
                [
                    "303 /auth/login?next=%2Fteams%2Fteam-a%2Fcredentials%2F1".into(),
                    "403".into(),
                    "400".into(),
                    "400".into(),
                ],
            ),
        ];
        for (i, who) in [Anonymous, OtherTeam, Member, Admin]
            .into_iter()
            .enumerate()
        {
            let mut b = browser_as(&app, who).await;
            for (method, path, expected) in &rows {
                let (status, headers, body) = match *method {
                    "GET" => b.get(path).await,
                    _ => {
                        let (p, q) = path.split_once('?').unwrap_or((path, ""));
                        let form: Vec<(&str, &str)> = q
                            .split('&')
                            .filter(|s| !s.is_empty())
                            .filter_map(|kv| kv.split_once('='))
                            .collect();
                        b.post_form(p, &form).await
                    }
                };
                assert_eq!(
                    outcome(status, &headers),
                    expected[i],
                    "{who:?} {method} {path}: {body}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn me_reports_the_user_and_teams_follow_groups_at_each_sign_in() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("alice", &["team-a", "team-c", "copr-admins"])
            .await;
        let (status, _, body) = b.get("/api/v1/me").await;
        assert_eq!(status, 200);
        let me: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["username"], "alice");
        assert_eq!(me["admin"], true);
        assert_eq!(
            me["teams"],
            serde_json::json!(["copr-admins", "team-a", "team-c"])
        );
        assert_eq!(
            me["groups"],
            serde_json::json!(["team-a", "team-c", "copr-admins"])
        );

        // Removed from team-c and from the admins in FAS: the next sign-in takes it away.
        let mut b2 = Browser::new(&app);
        b2.dev_sign_in("alice", &["team-a"]).await;
        let (_, _, body) = b2.get("/api/v1/me").await;
        let me: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["teams"], serde_json::json!(["team-a"]));
        assert_eq!(me["admin"], false);
        let (status, _, _) = b2.get("/teams/team-c").await;
        assert_eq!(status, 403);
        let last = audit_events::Entity::find()
            .order_by_desc(audit_events::Column::Id)
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.action, "user.sign_in");
        let details: Value = serde_json::from_str(&last.details).unwrap();
        assert_eq!(
            details["teams_left"],
            serde_json::json!(["copr-admins", "team-c"])
        );
    })
    .await;
}

#[tokio::test]
async fn only_configured_groups_are_teams() {
    each_db(|t| async move {
        let mut config = dev_config();
        config.team_groups = copr_pools::config::TeamGroups::Only(vec!["copr-team-*".into()]);
        let app = TestApp::with_config(&t, config).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in(
            "dave",
            &["packager", "copr-team-llvm", "fedora-contributor"],
        )
        .await;
        let (_, _, body) = b.get("/api/v1/me").await;
        let me: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["teams"], serde_json::json!(["copr-team-llvm"]));
        let (status, _, html) = b.get("/teams").await;
        assert_eq!(status, 200);
        assert!(
            html.contains("copr-team-llvm") && !html.contains("packager</a>"),
            "{html}"
        );
    })
    .await;
}

#[tokio::test]
async fn session_cookies_are_safe_and_rotated_at_sign_in() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        let (_, headers, _) = b.get("/auth/dev").await;
        let cookie = headers
            .get("set-cookie")
            .expect("a form cookie for the anonymous form token")
            .to_str()
            .unwrap()
            .to_string();
        assert!(cookie.starts_with("__Host-copr_pools_form="), "{cookie}");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
        assert!(
            !b.cookies.contains_key("copr_pools_session"),
            "no session for a visitor"
        );
        b.dev_sign_in("erin", &[]).await;
        let first = b.cookies["copr_pools_session"].clone();
        // Signing in again (as someone else, say) gets yet another id.
        b.dev_sign_in("erin", &[]).await;
        let second = b.cookies["copr_pools_session"].clone();
        assert_ne!(first, second, "a new session id at sign-in (no fixation)");

        // The old session id no longer signs anyone in.
        let mut attacker = Browser::new(&app);
        attacker.cookies.insert("copr_pools_session".into(), first);
        let (status, _, _) = attacker.get("/api/v1/me").await;
        assert_eq!(status, 401);
    })
    .await;
}

/// The store, the browser's session id and its stored record.
async fn stored_session(
    t: &crate::support::TestDb,
    b: &Browser<'_>,
) -> (
    copr_pools::auth::session::Store,
    tower_sessions::session::Id,
    tower_sessions::session::Record,
) {
    use tower_sessions::session_store::SessionStore;
    let store = copr_pools::auth::session::Store::new(&t.db, t.settings.schema.as_deref())
        .await
        .unwrap();
    let id: tower_sessions::session::Id = b.cookies["copr_pools_session"].parse().unwrap();
    let record = store
        .load(&id)
        .await
        .unwrap()
        .expect("the session is stored");
    (store, id, record)
}

/// How many sessions the store holds.
async fn session_rows(t: &crate::support::TestDb) -> i64 {
    use sea_orm::ConnectionTrait;
    let table = match &t.settings.schema {
        Some(schema) => format!("{schema}.session"),
        None => "tower_sessions".to_string(),
    };
    let row =
        t.db.query_one(sea_orm::Statement::from_string(
            t.db.get_database_backend(),
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn anonymous_page_views_write_nothing() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        for _ in 0..1000 {
            let (status, headers, _) = app
                .request(
                    http::Request::get("/")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(status, 200);
            assert!(
                headers
                    .get_all("set-cookie")
                    .iter()
                    .all(|c| !c.to_str().unwrap().starts_with("copr_pools_session=")),
                "a visitor got a session"
            );
        }
        // The sign-in form too: its token is the visitor's cookie, not a stored session.
        let mut b = Browser::new(&app);
        for _ in 0..5 {
            b.get("/auth/dev").await;
        }
        assert_eq!(session_rows(&t).await, 0, "anonymous views stored sessions");
        // And the cookie's token signs in (a session is stored only then).
        b.dev_sign_in("visitor", &[]).await;
        assert_eq!(session_rows(&t).await, 1);
        // A forged token, or one without its cookie, does not.
        let token = {
            let mut other = Browser::new(&app);
            other.csrf_token().await
        };
        let mut c = Browser::new(&app);
        c.get("/auth/dev").await;
        let (_, headers, _) = c
            .post_form(
                "/auth/dev/sign-in",
                &[("csrf_token", &token), ("username", "mallory")],
            )
            .await;
        assert!(
            headers["location"]
                .to_str()
                .unwrap()
                .contains("out%20of%20date")
                || headers["location"]
                    .to_str()
                    .unwrap()
                    .contains("out+of+date"),
            "{headers:?}"
        );
        assert_eq!(session_rows(&t).await, 1);
    })
    .await;
}

#[tokio::test]
async fn activity_keeps_a_session_alive_up_to_its_maximum_age() {
    use tower_sessions::session_store::SessionStore;
    each_db(|t| async move {
        let mut config = dev_config();
        config.session_inactivity_secs = 600;
        let app = TestApp::with_config(&t, config).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("ursula", &[]).await;
        let (store, id, mut record) = stored_session(&t, &b).await;
        // Ten minutes ago the session was last extended; it would end in 30 s.
        record.data.insert(
            "last_seen".into(),
            (chrono::Utc::now().timestamp_millis() - 600_000).into(),
        );
        record.expiry_date = tower_sessions::cookie::time::OffsetDateTime::now_utc()
            + tower_sessions::cookie::time::Duration::seconds(30);
        store.save(&record).await.unwrap();

        let (status, headers, _) = b.get("/api/v1/me").await;
        assert_eq!(status, 200);
        let record = store
            .load(&id)
            .await
            .unwrap()
            .expect("the session is stored");
        let left = record.expiry_date - tower_sessions::cookie::time::OffsetDateTime::now_utc();
        assert!(
            left > tower_sessions::cookie::time::Duration::seconds(590),
            "using the session moved its end to a full inactivity period away, not {left}"
        );
        let cookie = headers["set-cookie"].to_str().unwrap();
        assert!(
            cookie.contains("Max-Age=600") || cookie.contains("Max-Age=599"),
            "{cookie}"
        );

        // Right after, another request writes nothing.
        let before = store.load(&id).await.unwrap().unwrap().expiry_date;
        let (_, headers, _) = b.get("/api/v1/me").await;
        assert!(headers.get("set-cookie").is_none(), "saved again at once");
        assert_eq!(store.load(&id).await.unwrap().unwrap().expiry_date, before);
    })
    .await;
}

#[tokio::test]
async fn development_sign_ins_end_when_the_development_sign_in_is_turned_off() {
    each_db(|t| async move {
        let on = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&on);
        b.dev_sign_in("dave", &["copr-admins"]).await;
        assert_eq!(b.get("/api/v1/me").await.0, 200);

        // The same database, restarted without dev_login.
        let off = TestApp::new(&t).await;
        let mut stale = Browser::new(&off);
        stale.cookies = b.cookies.clone();
        assert_eq!(stale.get("/api/v1/me").await.0, 401);
        let (status, headers, _) = stale.get("/admin").await;
        assert!(
            status.is_redirection()
                && headers["location"]
                    .to_str()
                    .unwrap()
                    .starts_with("/auth/login"),
            "no admin pages either: {status}"
        );
        // And it is gone for good, even if dev_login comes back.
        assert_eq!(b.get("/api/v1/me").await.0, 401);
    })
    .await;
}

#[tokio::test]
async fn sign_out_needs_the_form_token_and_ends_the_session() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("frank", &["team-f"]).await;
        let (status, _, _) = b
            .post_form("/auth/logout", &[("csrf_token", "forged")])
            .await;
        assert_eq!(status, 403);
        assert_eq!(b.get("/api/v1/me").await.0, 200, "still signed in");
        let token = b.csrf_token().await;
        let (status, headers, _) = b.post_form("/auth/logout", &[("csrf_token", &token)]).await;
        assert_eq!(status, 303);
        assert_eq!(headers.get("location").unwrap(), "/");
        assert_eq!(b.get("/api/v1/me").await.0, 401);
    })
    .await;
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("gina", &[]).await;
        let token = b.csrf_token().await;
        // Even with the right token, a request from another site changes nothing.
        let (status, _, body) = b
            .post_form_from("/auth/logout", &[("csrf_token", &token)], "cross-site")
            .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("another site"));
        assert_eq!(b.get("/api/v1/me").await.0, 200, "the session survived");
        // A server function too.
        let (status, _, _) = b.post_form_from("/api/ui/session", &[], "cross-site").await;
        assert_eq!(status, 403);
        // Without Origin or Sec-Fetch-Site but with the session cookie: refused.
        let req = http::Request::post("/auth/logout")
            .header(
                "cookie",
                format!("copr_pools_session={}", b.cookies["copr_pools_session"]),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("csrf_token={token}")))
            .unwrap();
        assert_eq!(app.request(req).await.0, 403);
    })
    .await;
}

#[tokio::test]
async fn the_development_sign_in_keeps_what_was_typed_and_can_be_off() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        let token = b.csrf_token().await;
        let (status, headers, _) = b
            .post_form(
                "/auth/dev/sign-in",
                &[
                    ("csrf_token", &token),
                    ("username", "9lives"),
                    ("groups", "team-x, packager"),
                ],
            )
            .await;
        assert_eq!(status, 303);
        let location = headers
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(location.starts_with("/auth/dev?error="), "{location}");
        let (_, _, html) = b.get(&location).await;
        assert!(
            html.contains("starting with a letter"),
            "the error says what to fix"
        );
        assert!(
            html.contains(r#"value="9lives""#) && html.contains(r#"value="team-x, packager""#),
            "what was typed is kept"
        );
        let (_, _, html) = b.get("/").await;
        assert!(
            html.contains(r#"data-testid="dev-banner""#),
            "every page warns about the development sign-in"
        );

        let off = TestApp::new(&t).await;
        let mut b = Browser::new(&off);
        let (_, _, html) = b.get("/auth/dev").await;
        assert!(html.contains("turned off"));
        let (status, _, _) = b
            .post_form("/auth/dev/sign-in", &[("username", "mallory")])
            .await;
        assert_eq!(status, 404);
        let (_, _, html) = b.get("/").await;
        assert!(!html.contains("dev-banner"));
        let (status, headers, _) = b.get("/auth/login").await;
        assert_eq!(status, 303);
        assert!(
            headers
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("/auth/failed?reason=config")
        );
    })
    .await;
}

#[tokio::test]
async fn team_pages_list_members_and_owned_pools() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        let mut hank = Browser::new(&app);
        hank.dev_sign_in("hank", &["team-a"]).await;
        let team = copr_pools::accounts::team(&t.db, "team-a")
            .await
            .unwrap()
            .unwrap();
        let mut pool = PoolConfig::new("team_a_x86_64", "true", "true");
        pool.owner_team_id = Some(team.id);
        copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap();
        let (status, _, html) = alice.get("/teams/team-a").await;
        assert_eq!(status, 200);
        assert!(html.contains("team_a_x86_64"), "{html}");
        assert!(html.contains("<strong>hank</strong>") && html.contains("<strong>alice</strong>"));
        let (_, _, html) = alice.get("/teams").await;
        assert!(html.contains("2 members · 1 pool"), "{html}");
    })
    .await;
}

#[tokio::test]
async fn expired_sessions_end_whatever_their_activity() {
    each_db(|t| async move {
        let mut config = dev_config();
        config.session_inactivity_secs = 60;
        config.session_max_age_secs = 60;
        let app = TestApp::with_config(&t, config).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("ivan", &[]).await;
        assert_eq!(b.get("/api/v1/me").await.0, 200);
        // Age the sign-in in the stored session, as a minute passing would.
        use tower_sessions::session_store::SessionStore;
        let (store, _, mut record) = stored_session(&t, &b).await;
        record.data.insert(
            "signed_in_at".into(),
            (chrono::Utc::now().timestamp_millis() - 61_000).into(),
        );
        store.save(&record).await.unwrap();
        assert_eq!(
            b.get("/api/v1/me").await.0,
            401,
            "past session_max_age_secs the session is over"
        );
    })
    .await;
}
