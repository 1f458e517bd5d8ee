//! The allocation engine: resalloc's semantics, run inside the server.
//!
//! - [`model`] and [`core`]: the pure, deterministic decisions of a pass (no I/O, no clock).
//! - [`store`]: loading and persisting the engine's state in the database.
//! - [`hooks`]: running pool commands with resalloc's environment and log files.
//! - [`runner`]: the loop that ties them together.
//! - [`tickets`]: take / collect / wait / close, as the XML-RPC API offers them.
//! - [`pools`]: pool definitions, their validation and `pools.yaml` import / export.
//!
//! This module must never depend on the web (axum, Leptos): the server drives it, and tests
//! drive it without HTTP.

pub mod core;
pub mod hooks;
pub mod model;
pub mod pools;
pub mod runner;
pub mod store;
pub mod tickets;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tickets::Waiters;

/// The advisory-lock key that elects the one replica running the engine ("copr-eng").
const LEADER_LOCK_KEY: i64 = 0x636f_7072_2d65_6e67;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Where `hooks/<id>_<kind>` logs go.
    pub log_dir: PathBuf,
    /// The longest time between two passes when nothing happens.
    pub period: Duration,
    /// How many livechecks run at once.
    pub livecheck_concurrency: usize,
}

/// Figures about the engine, for `/metrics`, `/readyz` and the status page.
#[derive(Debug, Default)]
struct Stats {
    leader: std::sync::atomic::AtomicBool,
    passes: AtomicU64,
    conflicts: AtomicU64,
    assigned: AtomicU64,
    last_pass_at_ms: AtomicI64,
    last_pass_micros: AtomicU64,
    hooks_running: AtomicI64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub leader: bool,
    pub passes: u64,
    pub conflicts: u64,
    pub assigned: u64,
    pub last_pass_at_ms: i64,
    pub last_pass_micros: u64,
    pub hooks_running: i64,
}

struct Inner {
    db: DatabaseConnection,
    settings: EngineSettings,
    wake: Notify,
    waiters: Waiters,
    stats: Stats,
}

/// A handle on the engine: cheap to clone, shared by the runner and the APIs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(db: DatabaseConnection, settings: EngineSettings) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                db,
                settings,
                wake: Notify::new(),
                waiters: Waiters::default(),
                stats: Stats::default(),
            }),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    pub fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }

    /// Asks for a pass as soon as possible (a ticket came or went, a pool changed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn woken(&self) {
        self.inner.wake.notified().await
    }

    pub fn stats(&self) -> EngineStats {
        let s = &self.inner.stats;
        EngineStats {
            leader: s.leader.load(Ordering::Relaxed),
            passes: s.passes.load(Ordering::Relaxed),
            conflicts: s.conflicts.load(Ordering::Relaxed),
            assigned: s.assigned.load(Ordering::Relaxed),
            last_pass_at_ms: s.last_pass_at_ms.load(Ordering::Relaxed),
            last_pass_micros: s.last_pass_micros.load(Ordering::Relaxed),
            hooks_running: s.hooks_running.load(Ordering::Relaxed),
        }
    }

    fn record_pass(&self, took: Duration, assigned: usize) {
        let s = &self.inner.stats;
        s.passes.fetch_add(1, Ordering::Relaxed);
        s.assigned.fetch_add(assigned as u64, Ordering::Relaxed);
        s.last_pass_at_ms.store(runner::now_ms(), Ordering::Relaxed);
        s.last_pass_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn record_conflict(&self) {
        self.inner.stats.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    fn hook_started(&self) {
        self.inner
            .stats
            .hooks_running
            .fetch_add(1, Ordering::Relaxed);
    }

    fn hook_finished(&self) {
        self.inner
            .stats
            .hooks_running
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs the engine until `shutdown`. With PostgreSQL, only the replica holding the leader
    /// lock runs passes; the others wait for it, and serve the APIs meanwhile.
    pub async fn run(&self, shutdown: CancellationToken) {
        if self.db().get_database_backend() != DbBackend::Postgres {
            self.inner.stats.leader.store(true, Ordering::Relaxed);
            runner::run(self.clone(), shutdown).await;
            return;
        }
        loop {
            let pool = self.db().get_postgres_connection_pool();
            let attempt = async {
                let mut conn = pool.acquire().await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(got.then_some(conn))
            };
            match attempt.await {
                Ok(Some(mut conn)) => {
                    tracing::info!("this replica runs the allocation engine");
                    self.inner.stats.leader.store(true, Ordering::Relaxed);
                    let lost = CancellationToken::new();
                    let engine_stop = lost.child_token();
                    let run = runner::run(self.clone(), engine_stop.clone());
                    let watch = async {
                        // The lock lives as long as this connection: check it stays up.
                        loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            let alive = tokio::time::timeout(
                                Duration::from_secs(5),
                                sqlx::query("SELECT 1").execute(&mut *conn),
                            )
                            .await;
                            if !matches!(alive, Ok(Ok(_))) {
                                tracing::error!("lost the engine leader connection; stepping down");
                                return;
                            }
                        }
                    };
                    tokio::pin!(run);
                    let interrupted = tokio::select! {
                        _ = &mut run => false,
                        _ = watch => true,
                        _ = shutdown.cancelled() => true,
                    };
                    if interrupted {
                        // Let the runner finish the pass it is in (its transaction and the
                        // hooks it starts) rather than dropping it halfway.
                        engine_stop.cancel();
                        run.await;
                    }
                    self.inner.stats.leader.store(false, Ordering::Relaxed);
                    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(LEADER_LOCK_KEY)
                        .execute(&mut *conn)
                        .await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot try the engine leader lock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
