//! The allocation engine: resalloc's semantics, run inside the server.
//!
//! - [`model`] and [`core`]: the pure, deterministic decisions of a pass (no I/O, no clock).
//! - [`store`]: loading and persisting the engine's state in the database.
//! - [`hooks`]: running pool commands with resalloc's environment and log files.
//! - [`runner`]: the loop that ties them together.
//! - [`tickets`]: take / collect / wait / close, as the XML-RPC API offers them.
//! - [`pools`]: pool definitions, their validation and `pools.yaml` import / export.
//! - [`leader`]: the PostgreSQL advisory lock that lets one replica run the engine.
//!
//! This module must never depend on the web (axum, Leptos): the server drives it, and tests
//! drive it without HTTP.

pub mod core;
pub mod explain;
pub mod history;
pub mod hooks;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod pools;
pub mod runner;
pub mod signals;
pub mod store;
pub mod tickets;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod sim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use hooks::HookContext;
use leader::LeaderSettings;
use tickets::Waiters;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Hook logs, environment and credentials.
    pub hooks: HookContext,
    /// The longest time between two passes when nothing happens.
    pub period: Duration,
    /// How many livechecks run at once.
    pub livecheck_concurrency: usize,
    /// How the leader replica makes sure it still holds its lock (PostgreSQL).
    pub leader: LeaderSettings,
}

impl EngineSettings {
    /// The defaults of `copr-pools serve`, logging under `log_dir`, with the allowed part of
    /// this process's environment for hooks and no credentials.
    pub fn new(log_dir: impl Into<PathBuf>) -> EngineSettings {
        EngineSettings {
            hooks: HookContext::new(log_dir),
            period: Duration::from_secs(5),
            livecheck_concurrency: 8,
            leader: LeaderSettings::default(),
        }
    }

    /// Where `hooks/<id>_<kind>` logs go.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.hooks.log_dir
    }
}

/// Why the engine stopped on its own. The server treats it as fatal: it logs it, `/readyz`
/// reports the engine as failed, and the process exits non-zero so its supervisor restarts it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create the hook log directory {path}: {source} (check `log_dir`)")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the engine task panicked: {0}")]
    Panicked(String),
    #[error("the engine stopped without being asked to")]
    Stopped,
}

/// Figures about the engine, for `/metrics`, `/readyz` and the status page.
#[derive(Debug, Default)]
struct Stats {
    leader: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
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
    /// This process runs passes now.
    pub leader: bool,
    /// The engine stopped on an error or a panic (see [`Engine::failure`]).
    pub failed: bool,
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
    metrics: metrics::EngineMetrics,
    /// The PostgreSQL channel wake-ups go out on, once [`signals::bridge`] knows it.
    channel: std::sync::OnceLock<String>,
    /// A wake-up for the leader is being sent.
    wake_pending: AtomicBool,
    /// Counts changes that pages show (tickets, machines, pools); live pages watch it.
    changes: tokio::sync::watch::Sender<u64>,
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
                metrics: metrics::EngineMetrics::default(),
                channel: std::sync::OnceLock::new(),
                wake_pending: AtomicBool::new(false),
                changes: tokio::sync::watch::Sender::new(0),
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

    /// The engine's Prometheus families (hooks, passes, time to a machine).
    pub fn metrics(&self) -> &metrics::EngineMetrics {
        &self.inner.metrics
    }

    /// Asks for a pass as soon as possible (a ticket came or went, a pool changed): here,
    /// and, on a replica that does not lead, on the leader through PostgreSQL.
    pub fn wake(&self) {
        self.wake_here();
        // One message in flight at a time: a burst of takes costs one NOTIFY or two, not
        // one connection each. The flag is cleared before sending, so nothing is missed.
        if !self.stats().leader
            && self.inner.channel.get().is_some()
            && !self.inner.wake_pending.swap(true, Ordering::AcqRel)
        {
            let engine = self.clone();
            tokio::spawn(async move {
                engine.inner.wake_pending.store(false, Ordering::Release);
                if let Some(channel) = engine.inner.channel.get() {
                    let pool = engine.db().get_postgres_connection_pool();
                    signals::publish(pool, channel, "wake").await;
                }
            });
        }
    }

    /// Asks this process's runner for a pass.
    pub fn wake_here(&self) {
        self.inner.wake.notify_one();
        self.note_change();
    }

    /// Tells the live pages that what they show may have changed.
    pub fn note_change(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Announces [`Engine::note_change`]s.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn set_channel(&self, channel: String) {
        let _ = self.inner.channel.set(channel);
    }

    /// The PostgreSQL channel this replica hears other replicas on, once it listens.
    pub fn wake_channel(&self) -> Option<&str> {
        self.inner.channel.get().map(String::as_str)
    }

    /// Tells the other replicas' `waitTicket` callers that these tickets got machines.
    fn announce_assigned(&self, tickets: &[i64]) {
        let Some(channel) = self.inner.channel.get().cloned() else {
            return;
        };
        if tickets.is_empty() {
            return;
        }
        let pool = self.db().get_postgres_connection_pool().clone();
        let messages = signals::assigned_messages(tickets);
        tokio::spawn(async move {
            for m in messages {
                signals::publish(&pool, &channel, &m).await;
            }
        });
    }

    async fn woken(&self) {
        self.inner.wake.notified().await
    }

    pub fn stats(&self) -> EngineStats {
        let s = &self.inner.stats;
        EngineStats {
            leader: s.leader.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            passes: s.passes.load(Ordering::Relaxed),
            conflicts: s.conflicts.load(Ordering::Relaxed),
            assigned: s.assigned.load(Ordering::Relaxed),
            last_pass_at_ms: s.last_pass_at_ms.load(Ordering::Relaxed),
            last_pass_micros: s.last_pass_micros.load(Ordering::Relaxed),
            hooks_running: s.hooks_running.load(Ordering::Relaxed),
        }
    }

    /// Why the engine failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .stats
            .failure
            .lock()
            .expect("failure lock")
            .clone()
    }

    /// Records that the engine stopped for good: it no longer leads, and `/readyz` says so.
    pub fn mark_failed(&self, why: &EngineError) {
        let s = &self.inner.stats;
        s.leader.store(false, Ordering::Relaxed);
        *s.failure.lock().expect("failure lock") = Some(why.to_string());
        s.failed.store(true, Ordering::Relaxed);
    }

    fn set_leader(&self, leader: bool) {
        self.inner.stats.leader.store(leader, Ordering::Relaxed);
    }

    fn record_pass(&self, took: Duration, assigned: usize) {
        let s = &self.inner.stats;
        s.passes.fetch_add(1, Ordering::Relaxed);
        s.assigned.fetch_add(assigned as u64, Ordering::Relaxed);
        s.last_pass_at_ms.store(runner::now_ms(), Ordering::Relaxed);
        s.last_pass_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.inner.metrics.pass_seconds.observe(took.as_secs_f64());
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
    /// lock runs passes; the others wait for it, and serve the APIs meanwhile. Returns an
    /// error only when the engine cannot go on at all; [`Engine::supervise`] makes that fatal.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let _leading = LeaderFlag(self.clone());
        if self.db().get_database_backend() != DbBackend::Postgres {
            self.set_leader(true);
            return runner::run(self.clone(), shutdown).await;
        }
        let pool = self.db().get_postgres_connection_pool().clone();
        let settings = self.settings().leader.clone();
        let key = tokio::select! {
            key = leader::lock_key(&pool) => key,
            _ = shutdown.cancelled() => return Ok(()),
        };
        loop {
            match leader::LeaderLock::try_acquire(&pool, key).await {
                Ok(Some(mut lock)) => {
                    tracing::info!("this replica runs the allocation engine");
                    self.set_leader(true);
                    let engine_stop = CancellationToken::new();
                    let run = runner::run(self.clone(), engine_stop.clone());
                    tokio::pin!(run);
                    let finished = tokio::select! {
                        result = &mut run => Some(result),
                        holder = lock.hold(&pool, &settings) => {
                            tracing::error!(holder_pid = holder, "another session holds the engine leader lock; stepping down");
                            None
                        }
                        _ = shutdown.cancelled() => None,
                    };
                    let result = match finished {
                        Some(result) => result,
                        None => {
                            // Let the runner finish the pass it is in (its transaction and the
                            // hooks it starts) rather than dropping it halfway; it then stops
                            // its hooks, which the new leader's restart cleanup takes over.
                            engine_stop.cancel();
                            run.await
                        }
                    };
                    self.set_leader(false);
                    lock.release(settings.probe_timeout).await;
                    result?;
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot try the engine leader lock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.retry_every) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Waits for the engine task and turns its end into a verdict: `Ok` when it stopped
    /// because `shutdown` was asked for, otherwise the error (a panic included), after
    /// logging it and marking the engine failed.
    pub async fn supervise(
        &self,
        task: &mut tokio::task::JoinHandle<Result<(), EngineError>>,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        let error = match task.await {
            Ok(Ok(())) if shutdown.is_cancelled() => return Ok(()),
            Ok(Ok(())) => EngineError::Stopped,
            Ok(Err(e)) => e,
            Err(join) => EngineError::Panicked(panic_message(join)),
        };
        tracing::error!(error = %error, "the allocation engine stopped");
        self.mark_failed(&error);
        Err(error)
    }
}

/// Clears the leader flag however `Engine::run` ends, a panic included, so nothing reports an
/// engine running that is not.
struct LeaderFlag(Engine);

impl Drop for LeaderFlag {
    fn drop(&mut self) {
        self.0.set_leader(false);
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
