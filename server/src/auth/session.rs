//! Sessions with tower-sessions, stored in the application's own database (the sqlx store on
//! the pool sea-orm already holds). Cookies are `HttpOnly`, `Secure`, `SameSite=Lax` (Strict
//! would lose the session on the redirect back from the provider) and expire after inactivity;
//! a background task deletes expired sessions.
//!
//! A session is stored only for a signed-in user or a sign-in in progress: anonymous page
//! views write nothing (their form token is a cookie, see [`super::csrf`]). A signed-in
//! session's expiry moves with its use ([`keep_alive`]), at most once a minute, so
//! `session_inactivity_secs` is an inactivity limit and `session_max_age_secs` the lifetime.

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sea_orm::{DatabaseConnection, DbBackend};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// The session cookie's name.
pub const COOKIE: &str = "copr_pools_session";

/// Keys in the session.
pub const USER_ID: &str = "user_id";
pub const SIGNED_IN_AT: &str = "signed_in_at";
pub const CSRF_TOKEN: &str = "csrf_token";
/// When the session's expiry was last moved forward (Unix ms).
pub const LAST_SEEN: &str = "last_seen";
/// How the user signed in: [`METHOD_OIDC`] or [`METHOD_DEV`].
pub const SIGN_IN_METHOD: &str = "sign_in_method";
pub const METHOD_OIDC: &str = "oidc";
pub const METHOD_DEV: &str = "dev";
pub const OIDC_ATTEMPT: &str = "oidc_attempt";
pub const SIGN_IN_FAILURE: &str = "sign_in_failure";

/// The session store for whichever database the server uses.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// A store on the server's database, its table created when missing. `schema` is the
    /// PostgreSQL schema (tests use their own).
    pub async fn new(db: &DatabaseConnection, schema: Option<&str>) -> Result<Store, sqlx::Error> {
        let store = match sea_orm::ConnectionTrait::get_database_backend(db) {
            DbBackend::Postgres => {
                let mut s = PostgresStore::new(db.get_postgres_connection_pool().clone());
                if let Some(schema) = schema {
                    s = s
                        .with_schema_name(schema)
                        .map_err(|e| sqlx::Error::Configuration(e.into()))?;
                }
                s.migrate().await?;
                Store::Postgres(s)
            }
            _ => {
                let s = SqliteStore::new(db.get_sqlite_connection_pool().clone());
                s.migrate().await?;
                Store::Sqlite(s)
            }
        };
        Ok(store)
    }

    /// The session layer over this store.
    pub fn layer(&self, inactivity: Duration) -> SessionManagerLayer<Store> {
        SessionManagerLayer::new(self.clone())
            .with_name(COOKIE)
            .with_http_only(true)
            .with_secure(true)
            .with_same_site(SameSite::Lax)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(
                tower_sessions::cookie::time::Duration::try_from(inactivity)
                    .unwrap_or(tower_sessions::cookie::time::Duration::HOUR),
            ))
    }

    /// Deletes expired sessions every `period` until the future is dropped.
    pub async fn delete_expired_every(self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = self.delete_expired().await {
                tracing::warn!(error = %e, "cannot delete expired sessions");
            }
        }
    }
}

#[async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Store::Sqlite(s) => s.create(record).await,
            Store::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Store::Sqlite(s) => s.save(record).await,
            Store::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Store::Sqlite(s) => s.load(id).await,
            Store::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Store::Sqlite(s) => s.delete(id).await,
            Store::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for Store {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Store::Sqlite(s) => s.delete_expired().await,
            Store::Postgres(s) => s.delete_expired().await,
        }
    }
}

/// How often a signed-in session's stored expiry is moved forward: a minute, or a tenth of
/// the inactivity limit when that is shorter. Between two moves a session may end up to this
/// much earlier than its last use plus the limit.
pub fn refresh_every(inactivity: Duration) -> Duration {
    (inactivity / 10).min(Duration::from_secs(60))
}

/// Middleware inside the session layer: a request of a signed-in user moves the session's
/// expiry forward (by saving it) when it was last moved more than [`refresh_every`] ago.
/// Anonymous requests are left alone, so they never create a session.
pub async fn keep_alive(
    State(inactivity): State<Duration>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let session = req.extensions().get::<Session>().cloned();
    let res = next.run(req).await;
    if let Some(session) = session
        && let Err(e) = touch(&session, refresh_every(inactivity)).await
    {
        tracing::warn!(error = %e, "cannot extend the session");
    }
    res
}

async fn touch(session: &Session, every: Duration) -> Result<(), tower_sessions::session::Error> {
    // A request without a session cookie has no id: nothing to load, nothing to extend.
    if session.id().is_none() || session.get::<i32>(USER_ID).await?.is_none() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let last = match session.get::<i64>(LAST_SEEN).await? {
        Some(t) => t,
        None => session.get::<i64>(SIGNED_IN_AT).await?.unwrap_or(0),
    };
    if now.saturating_sub(last) >= every.as_millis() as i64 {
        session.insert(LAST_SEEN, now).await?;
    }
    Ok(())
}

/// 32 random bytes from the operating system, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
