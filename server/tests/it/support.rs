//! Fresh databases per test, the app in-process, and helpers to call it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use copr_pools::auth::session::Store;
use copr_pools::config::Config;
use copr_pools::db::{self, DbSettings};
use copr_pools::engine::{Engine, EngineSettings};
use copr_pools::web::{AppState, router};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::OnceCell;
use tower::ServiceExt;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("COPR_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

static PG: OnceCell<bool> = OnceCell::const_new();

/// Whether the PostgreSQL tests run: when the server answers, and always (failing loudly) when
/// COPR_TEST_REQUIRE_POSTGRES=1.
pub async fn postgres_available() -> bool {
    *PG.get_or_init(|| async {
        let required = std::env::var("COPR_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let ok = tokio::time::timeout(
            Duration::from_secs(3),
            db::connect(&DbSettings {
                url: pg_url(),
                max_connections: 1,
                schema: None,
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !ok && required {
            panic!(
                "COPR_TEST_REQUIRE_POSTGRES=1 but PostgreSQL at {} does not answer",
                pg_url()
            );
        }
        if !ok {
            eprintln!(
                "note: PostgreSQL at {} does not answer; its tests are skipped",
                pg_url()
            );
        }
        ok
    })
    .await
}

/// A fresh, migrated database: a SQLite file in a temporary directory, or a new PostgreSQL
/// schema (dropped by [`TestDb::cleanup`]).
pub struct TestDb {
    pub db: DatabaseConnection,
    pub settings: DbSettings,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        Self::unmigrated(kind).await.migrated().await
    }

    pub async fn unmigrated(kind: Kind) -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let settings = match kind {
            Kind::Sqlite => DbSettings {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("test.sqlite").display()
                ),
                max_connections: 4,
                schema: None,
            },
            Kind::Postgres => {
                let schema = format!("it_{}", uuid::Uuid::new_v4().simple());
                pg_admin(&format!("CREATE SCHEMA {schema}")).await;
                DbSettings {
                    url: pg_url(),
                    max_connections: 4,
                    schema: Some(schema),
                }
            }
        };
        let db = db::connect(&settings).await.expect("test database");
        TestDb { db, settings, dir }
    }

    async fn migrated(self) -> TestDb {
        db::migrate(&self.db).await.expect("migrations");
        self
    }

    pub async fn cleanup(self) {
        self.db.close().await.ok();
        if let Some(schema) = &self.settings.schema {
            pg_admin(&format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }

    /// The environment that points a `copr-pools` process at this database.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "COPR_POOLS_DATABASE_URL".to_string(),
            self.settings.url.clone(),
        )];
        if let Some(schema) = &self.settings.schema {
            // libpq-style options reach sqlx through the URL.
            let sep = if self.settings.url.contains('?') {
                '&'
            } else {
                '?'
            };
            env[0].1 = format!(
                "{}{sep}options=-c%20search_path%3D{schema}",
                self.settings.url
            );
        }
        env
    }
}

/// Runs one statement on the PostgreSQL test database, outside any test schema.
async fn pg_admin(sql: &str) {
    let admin = db::connect(&DbSettings {
        url: pg_url(),
        max_connections: 1,
        schema: None,
    })
    .await
    .unwrap();
    admin
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    admin.close().await.ok();
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the test body once per available database, each time on a fresh one. A failing body
/// still gets its database cleaned up before the failure is reported.
pub async fn each_db<F, Fut>(body: F)
where
    F: Fn(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut kinds = vec![Kind::Sqlite];
    if postgres_available().await {
        kinds.push(Kind::Postgres);
    }
    for kind in kinds {
        let t = Arc::new(TestDb::new(kind).await);
        let result = tokio::spawn(body(t.clone())).await;
        let t = Arc::into_inner(t).expect("the test body released its database");
        t.cleanup().await;
        if let Err(e) = result {
            if e.is_panic() {
                eprintln!("failed on {kind:?}");
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("test task failed on {kind:?}: {e}");
        }
    }
}

/// The web app over a test database, called in-process.
pub struct TestApp {
    pub router: axum::Router,
}

impl TestApp {
    pub async fn new(t: &TestDb) -> TestApp {
        Self::with_config(t, Config::default()).await
    }

    pub async fn with_config(t: &TestDb, config: Config) -> TestApp {
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let store = Store::new(&t.db, t.settings.schema.as_deref())
            .await
            .expect("session store");
        let state = AppState::new(Arc::new(config), t.db.clone(), engine);
        TestApp {
            router: router(state, &store),
        }
    }

    pub async fn request(
        &self,
        req: http::Request<Body>,
    ) -> (http::StatusCode, http::HeaderMap, String) {
        let what = format!("{} {}", req.method(), req.uri());
        let res = tokio::time::timeout(Duration::from_secs(20), self.router.clone().oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("no answer in 20 s to {what}"))
            .expect("router answers");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn get(&self, path: &str) -> (http::StatusCode, String) {
        let (s, _, b) = self
            .request(http::Request::get(path).body(Body::empty()).unwrap())
            .await;
        (s, b)
    }
}

/// A browser talking to the in-process app: keeps its cookies, sends same-origin headers on
/// POST like a real browser does.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, headers: &http::HeaderMap) {
        for c in headers.get_all(http::header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if c.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (http::StatusCode, http::HeaderMap, String) {
        let req = http::Request::get(path)
            .header("cookie", self.cookie_header())
            .header("accept", "text/html,application/xhtml+xml")
            .body(Body::empty())
            .unwrap();
        let (s, h, b) = self.app.request(req).await;
        self.remember(&h);
        (s, h, b)
    }

    /// A form POST from this site (`Sec-Fetch-Site: same-origin`).
    pub async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (http::StatusCode, http::HeaderMap, String) {
        self.post_form_from(path, form, "same-origin").await
    }

    pub async fn post_form_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        site: &str,
    ) -> (http::StatusCode, http::HeaderMap, String) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = http::Request::post(path)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Body::from(body))
            .unwrap();
        let (s, h, b) = self.app.request(req).await;
        self.remember(&h);
        (s, h, b)
    }

    /// The session's form token, as the pages carry it.
    pub async fn csrf_token(&mut self) -> String {
        let (_, _, html) = self.get("/auth/dev").await;
        let marker = r#"name="csrf_token" value=""#;
        let start = html.find(marker).expect("a form token on the page") + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    }

    /// Signs in through the development sign-in form.
    pub async fn dev_sign_in(&mut self, username: &str, groups: &[&str]) {
        let token = self.csrf_token().await;
        let groups = groups.join(",");
        let (status, headers, body) = self
            .post_form(
                "/auth/dev/sign-in",
                &[
                    ("csrf_token", &token),
                    ("username", username),
                    ("groups", &groups),
                ],
            )
            .await;
        assert_eq!(status, 303, "{body}");
        assert_eq!(
            headers.get("location").unwrap(),
            "/",
            "signed in, back home"
        );
    }
}

pub fn engine_settings(dir: &Path) -> EngineSettings {
    EngineSettings {
        log_dir: dir.join("logs"),
        period: Duration::from_millis(500),
        livecheck_concurrency: 4,
    }
}

/// The repository root (for the fake cloud scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Polls `check` every 50 ms until it returns Some, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
