//! The database connection: SQLite (embedded default) or PostgreSQL, by URL.
//!
//! SQLite runs in WAL mode with a busy timeout so the engine, the APIs and the CLI can share one
//! file. Migrations run under a PostgreSQL advisory lock so several replicas may start at once.

use std::path::Path;
use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait,
};

/// The advisory-lock key that serialises migrations between replicas ("copr-mig").
const MIGRATION_LOCK_KEY: i64 = 0x636f_7072_2d6d_6967;

/// Errors of this layer; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the directory {path} for the SQLite database: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database ({url}): {source}")]
    Connect { url: String, source: DbErr },
    #[error("database migration failed: {0}")]
    Migrate(DbErr),
    #[error(transparent)]
    Query(#[from] DbErr),
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: use this schema instead of `public` (tests get one each).
    pub schema: Option<String>,
}

/// Opens the database, creating the SQLite file and its directory when needed.
pub async fn connect(settings: &DbSettings) -> Result<DatabaseConnection, DbError> {
    if let Some(dir) = sqlite_parent_dir(&settings.url) {
        std::fs::create_dir_all(&dir).map_err(|source| DbError::Directory {
            path: dir.clone(),
            source,
        })?;
    }
    let mut options = ConnectOptions::new(settings.url.clone());
    options
        .max_connections(settings.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        // A ping before every use doubles the round trips of the engine and the XML-RPC API;
        // a connection that broke is replaced when a query on it fails.
        .test_before_acquire(false)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
        });
    if let Some(schema) = &settings.schema {
        options.set_schema_search_path(schema.clone());
    }
    Database::connect(options)
        .await
        .map_err(|source| DbError::Connect {
            url: redact_url(&settings.url),
            source,
        })
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbError> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    if postgres {
        // Held on one pooled connection: take and release it in the same statement sequence
        // by using a transaction-scoped lock.
        let txn = db.begin().await?;
        txn.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await?;
        Migrator::up(&txn, None).await.map_err(DbError::Migrate)?;
        txn.commit().await?;
    } else {
        Migrator::up(db, None).await.map_err(DbError::Migrate)?;
    }
    Ok(())
}

/// The names of migrations not yet applied (empty when the schema is current).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbError> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_string())
        .collect())
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once (by a
/// no-op write to `write_gate`), so reads inside it never need an upgrade that SQLite would
/// refuse with "database is locked" while another connection writes; it waits its turn.
pub async fn begin_write(
    db: &(impl TransactionTrait + ConnectionTrait),
) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE write_gate SET id = id WHERE 0 = 1")
            .await?;
    }
    Ok(txn)
}

/// A cheap round trip that proves the database answers.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbError> {
    db.ping().await?;
    Ok(())
}

fn sqlite_parent_dir(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let parent = Path::new(path).parent()?;
    let parent = parent.to_str()?;
    (!parent.is_empty()).then(|| parent.to_string())
}

/// Query parameters of a database URL that carry secrets (libpq's names).
const SECRET_PARAMS: &[&str] = &["password", "sslpassword"];

/// The URL without its secrets (the password, and `password` / `sslpassword` parameters),
/// for messages.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        // Not a URL we can take apart: show only its scheme.
        return match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:***"),
            None => "***".to_string(),
        };
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret_param = |k: &str| SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
    if u.query_pairs().any(|(k, _)| secret_param(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_directories_are_found() {
        assert_eq!(
            sqlite_parent_dir("sqlite://data/x.sqlite?mode=rwc").as_deref(),
            Some("data")
        );
        assert_eq!(
            sqlite_parent_dir("sqlite:/tmp/a/b.db").as_deref(),
            Some("/tmp/a")
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://x.db"), None);
        assert_eq!(sqlite_parent_dir("postgres://h/db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let r = redact_url(
            "postgres://u@h/db?sslmode=verify-full&password=hunter2&SSLPassword=keypass&application_name=copr",
        );
        assert!(!r.contains("hunter2") && !r.contains("keypass"), "{r}");
        assert!(
            r.contains("sslmode=verify-full") && r.contains("application_name=copr"),
            "{r}"
        );
        assert!(
            r.contains("password=***") || r.contains("password=%2A%2A%2A"),
            "{r}"
        );
        assert_eq!(
            redact_url("sqlite://data/copr-pools.sqlite?mode=rwc"),
            "sqlite://data/copr-pools.sqlite?mode=rwc"
        );
        assert!(!redact_url("postgres://u:p@ss word@h").contains("ss word"));
    }
}
