//! Fresh databases per test, the app in-process, and helpers to call it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use copr_pools::auth::session::Store;
use copr_pools::bench::RpcClient;
use copr_pools::config::Config;
use copr_pools::credentials::Vault;
use copr_pools::db::{self, DbSettings};
use copr_pools::engine::{Engine, EngineSettings};
use copr_pools::secrets::Keyring;
use copr_pools::web::{AppState, app};
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

    /// A fresh PostgreSQL schema reached through `url` (a proxy in front of the test
    /// database), migrated.
    pub async fn postgres_via(url: String) -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let schema = format!("it_{}", uuid::Uuid::new_v4().simple());
        pg_admin(&format!("CREATE SCHEMA {schema}")).await;
        let settings = DbSettings {
            url,
            max_connections: 4,
            schema: Some(schema),
        };
        let db = db::connect(&settings).await.expect("test database");
        TestDb { db, settings, dir }.migrated().await
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

/// The web app over a test database, called in-process, as if from a loopback client.
pub struct TestApp {
    pub router: Client,
    /// The same app seen from another host (for what only loopback clients may read).
    pub remote: Client,
}

/// The web app as one client sees it (its address).
pub type Client =
    <axum::extract::connect_info::MockConnectInfo<std::net::SocketAddr> as tower::Layer<
        copr_pools::web::Front,
    >>::Service;

impl TestApp {
    pub async fn new(t: &TestDb) -> TestApp {
        Self::with_config(t, Config::default()).await
    }

    pub async fn with_config(t: &TestDb, config: Config) -> TestApp {
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        Self::with_engine(t, config, engine).await
    }

    pub async fn with_engine(t: &TestDb, config: Config, engine: Engine) -> TestApp {
        let store = Store::new(&t.db, t.settings.schema.as_deref())
            .await
            .expect("session store");
        let state = AppState::new(Arc::new(config), t.db.clone(), engine, vault(t));
        let app = app(state, &store);
        let from = |ip: [u8; 4]| {
            axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from((ip, 40000)))
        };
        TestApp {
            remote: tower::Layer::layer(&from([198, 51, 100, 7]), app.clone()),
            router: tower::Layer::layer(&from([127, 0, 0, 1]), app),
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

    /// Opens a server-sent event stream as this browser's EventSource would.
    pub async fn events(&mut self, path: &str) -> (http::StatusCode, http::HeaderMap, Events) {
        use tower::ServiceExt;
        let req = http::Request::get(path)
            .header("cookie", self.cookie_header())
            .header("accept", "text/event-stream")
            .body(Body::empty())
            .unwrap();
        let res = self
            .app
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router answers");
        let (status, headers) = (res.status(), res.headers().clone());
        (
            status,
            headers,
            Events {
                body: res.into_body(),
                buf: String::new(),
            },
        )
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
        self.form_token("/auth/dev").await
    }

    /// The form token of the forms on the page at `path`.
    pub async fn form_token(&mut self, path: &str) -> String {
        let (_, _, html) = self.get(path).await;
        let marker = r#"name="csrf_token" value=""#;
        let start = html
            .find(marker)
            .unwrap_or_else(|| panic!("a form token on {path}: {html}"))
            + marker.len();
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

/// The credentials service on the test database, with a fixed test key.
pub fn vault(t: &TestDb) -> Vault {
    Vault::new(t.db.clone(), Arc::new(Keyring::for_tests()))
}

pub fn engine_settings(dir: &Path) -> EngineSettings {
    let mut s = EngineSettings::new(dir.join("logs"));
    s.period = Duration::from_millis(500);
    s.livecheck_concurrency = 4;
    s
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

/// The key processes under test seal secrets with (base64 of 32 bytes of 7).
pub const TEST_KEY: &str = "test:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// `copr-pools` on the test database, with its logs and site under the test's directory.
/// `env` comes last, so a test can override anything.
pub fn copr_pools(t: &TestDb, env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_copr-pools"));
    c.envs(t.env())
        .env("COPR_POOLS_LOG_DIR", t.dir.path().join("logs"))
        .env("COPR_POOLS_DATA_DIR", t.dir.path().join("data"))
        .env("COPR_POOLS_SECRET_KEYS", TEST_KEY)
        .env("COPR_POOLS_SITE_ROOT", t.dir.path().join("site"))
        .env("COPR_POOLS_ENGINE_PERIOD_SECS", "1")
        .env("COPR_POOLS_LOG", "warn")
        .env_remove("COPR_POOLS_CONFIG")
        .envs(env.iter().cloned());
    c
}

/// A `copr-pools serve` process, killed (by its PID) when dropped.
pub struct Server {
    pub child: Child,
}

impl Server {
    /// Starts `copr-pools serve` on the test database and waits until it answers XML-RPC.
    pub async fn start(t: &TestDb, env: &[(String, String)], client: &RpcClient) -> Server {
        let child = copr_pools(t, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child };
        answering(client).await;
        server
    }

    pub fn kill9(mut self) {
        // SAFETY: sends SIGKILL to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        // SAFETY: sends SIGTERM to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a server answers XML-RPC.
pub async fn answering(client: &RpcClient) {
    eventually("the server to answer", Duration::from_secs(30), || {
        let c = client.clone();
        async move { c.call("system.listMethods", vec![]).await.ok().map(|_| ()) }
    })
    .await;
}

/// A TCP proxy in front of PostgreSQL whose connections can be stalled one by one, the way a
/// network hiccup or an overloaded server stalls a single session: bytes are held, nothing is
/// closed. Stops when dropped.
pub struct StallingProxy {
    pub port: u16,
    stalls: Arc<std::sync::Mutex<std::collections::HashMap<u16, tokio::sync::watch::Sender<bool>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    pub async fn start(target: &str) -> StallingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalls: Arc<
            std::sync::Mutex<std::collections::HashMap<u16, tokio::sync::watch::Sender<bool>>>,
        > = Default::default();
        let target = target.to_string();
        let map = stalls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                // PostgreSQL sees this port as the session's client_port.
                let upstream_port = server.local_addr().unwrap().port();
                let (tx, rx) = tokio::sync::watch::channel(false);
                map.lock().unwrap().insert(upstream_port, tx);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, rx.clone()));
                tokio::spawn(pump(sr, cw, rx));
            }
        });
        StallingProxy { port, stalls, task }
    }

    /// The URL of the test database through this proxy.
    pub fn url(&self) -> String {
        let direct = url::Url::parse(&pg_url()).unwrap();
        let mut u = direct.clone();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.to_string()
    }

    /// Holds every byte of the session whose client port (in `pg_stat_activity`) is `port`.
    pub fn stall(&self, port: u16) {
        let map = self.stalls.lock().unwrap();
        map.get(&port)
            .unwrap_or_else(|| panic!("no proxied session from port {port}"))
            .send_replace(true);
    }

    pub fn resume_all(&self) {
        for tx in self.stalls.lock().unwrap().values() {
            tx.send_replace(false);
        }
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A server-sent event stream being read.
pub struct Events {
    body: Body,
    buf: String,
}

impl Events {
    /// The data of the next message (comments and keep-alives skipped), or `None` when the
    /// stream ends or nothing comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<String> {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let message: String = self.buf.drain(..i + 2).collect();
                let data: Vec<&str> = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(data.join("\n"));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// The next message as JSON.
    pub async fn next_json(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let data = self.next(wait).await?;
        Some(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")))
    }
}

/// Team `llvm`'s pool `llvm-x86` (the team exists once someone in the group signed in) with
/// one preallocated machine up: its address is `10.9.8.7` and its alloc log says
/// `booting-llvm-builder`. The engine runs until the returned token is cancelled.
pub async fn llvm_pool_up(
    t: &TestDb,
    engine: &Engine,
    description: Option<&str>,
) -> (
    tokio_util::sync::CancellationToken,
    copr_pools::entities::resources::Model,
) {
    use copr_pools::engine::model::{PoolConfig, Tag};
    use copr_pools::entities::{resources, teams};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let team = teams::Entity::find()
        .filter(teams::Column::Name.eq("llvm"))
        .one(&t.db)
        .await
        .unwrap()
        .expect("team llvm: sign a member in first");
    let mut p = PoolConfig::new(
        "llvm-x86",
        "echo booting-llvm-builder >&2; echo 10.9.8.7",
        "true",
    );
    p.tags = vec![Tag::new("copr_builder", 0)];
    p.max_prealloc = 1;
    p.owner_team_id = Some(team.id);
    p.description = description.map(str::to_string);
    copr_pools::pools::save(&t.db, &[p], &copr_pools::audit::Actor::System)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run(s).await });
    let db = t.db.clone();
    let machine = eventually("the preallocated machine", Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            resources::Entity::find()
                .filter(resources::Column::State.eq("UP"))
                .one(&db)
                .await
                .unwrap()
        }
    })
    .await;
    (stop, machine)
}
