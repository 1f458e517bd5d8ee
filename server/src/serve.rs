//! `copr-pools serve`: the web listener, the XML-RPC listener and the engine, with structured
//! logs and a graceful shutdown on SIGTERM or SIGINT.
//!
//! Nothing dies silently: when the engine or a listener stops without being asked to (an
//! error, a panic), the server logs why, shuts the rest down and exits non-zero, so systemd
//! (or whatever runs it) restarts it; `/readyz` reports the failed engine meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::auth::session::Store;
use crate::config::Config;
use crate::credentials::Vault;
use crate::engine::hooks::HookEnv;
use crate::engine::{Engine, EngineSettings};
use crate::secrets::{KeySource, Keyring};
use crate::state::AppState;
use crate::{db, telemetry, xmlrpc};

/// Runs the server. `config_path` is the file the configuration came from (or None: then
/// `COPR_POOLS_CONFIG`, as at startup), read again on SIGHUP.
pub async fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    telemetry::init(&config);
    // Listen for SIGHUP before anything slow: its default action would end the process (and
    // systemd counts that as a clean exit, not one to restart after) if `systemctl reload`
    // came while the database or the migrations are still being waited for.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    // Hooks run as this user: keep them (and anything they start) from reading this
    // process's memory and environment (/proc/<pid>/environ, ptrace), where the database
    // URL, the OIDC secret and the keys of stored secrets are. Hooks themselves are
    // dumpable again once they exec.
    // SAFETY: prctl with PR_SET_DUMPABLE only changes this process's dumpable flag.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!("cannot make the server undumpable; hooks could read its environment");
    }
    let db = db::connect(&db::DbSettings {
        url: config.database_url.clone(),
        max_connections: config.database_max_connections,
        schema: None,
    })
    .await?;
    db::migrate(&db).await?;
    tracing::info!(database = %db::redact_url(&config.database_url), "database ready");

    if config.dev_login {
        tracing::warn!(
            listen = %config.listen,
            "the development sign-in is on: anyone who can reach this address can sign in as anyone"
        );
    }
    let (keyring, source) = Keyring::load(&config)?;
    match &source {
        KeySource::Created(path) => tracing::warn!(
            path = %path.display(),
            "created a key for stored secrets; back it up, without it the stored credentials cannot be read"
        ),
        KeySource::Found(path) => {
            tracing::info!(path = %path.display(), key_ids = ?keyring.ids(), "key for stored secrets")
        }
        KeySource::Configured => {
            tracing::info!(key_ids = ?keyring.ids(), "keys for stored secrets")
        }
    }
    let vault = Vault::new(db.clone(), Arc::new(keyring));
    for u in vault.unreadable().await? {
        tracing::error!(
            credential = %format!("{}/{}", u.team, u.name),
            id = u.id,
            key_id = %u.key_id,
            why = %u.why,
            "a stored credential cannot be decrypted with the configured keys: add the key it was sealed with (secret_keys) or give the credential a new secret"
        );
    }
    let mut settings = engine_settings(&config);
    settings.hooks.credentials = Some(Arc::new(vault.clone()));
    let engine = Engine::new(db.clone(), settings);
    let shutdown = CancellationToken::new();
    let config = Arc::new(config);

    let web = crate::web::Listeners::bind(config.listen, crate::web::threads(config.web_threads))
        .with_context(|| format!("cannot listen on {} (key `listen`)", config.listen))?;
    let rpc = tokio::net::TcpListener::bind(config.xmlrpc_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (key `xmlrpc_listen`)",
                config.xmlrpc_listen
            )
        })?;

    let store = Store::new(&db, None)
        .await
        .context("cannot prepare the session table")?;
    let state = AppState::new(config.clone(), db.clone(), engine.clone(), vault);
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (store, stop) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = store.delete_expired_every(Duration::from_secs(300)) => {}
                _ = stop.cancelled() => {}
            }
            Ok(())
        });
    }
    {
        // Secrets of revoked credentials go once no machine needs them to be deleted.
        let (vault, stop) = (state.vault.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                match vault.purge_revoked().await {
                    Ok(purged) => {
                        for c in purged {
                            tracing::info!(credential = %c, "deleted the secret of a revoked credential: its last machine is gone");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot tidy revoked credentials"),
                }
            }
        });
    }
    if let Some(file) = &config.pools_file {
        import_pools_file(&db, file).await;
    }
    {
        // SIGHUP: the reloadable settings and pools_file, again; tickets and hooks carry on.
        let (state, stop) = (state.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hangup.recv() => reload(&state, config_path.as_deref()).await,
                    _ = stop.cancelled() => return Ok(()),
                }
            }
        });
    }
    // Replicas on PostgreSQL wake each other (takes, closes, assignments) over LISTEN/NOTIFY.
    if !config.is_sqlite() {
        let (engine, stop) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::engine::signals::bridge(engine, stop).await;
            Ok(())
        });
    }
    // The engine is awaited on its own, so that its end is seen at once.
    let mut engine_task = config.engine.then(|| {
        let (engine, stop) = (engine.clone(), shutdown.clone());
        tokio::spawn(async move { engine.run(stop).await })
    });
    {
        let stop = shutdown.clone();
        let app = xmlrpc::router(engine.clone(), config.xmlrpc_max_body_bytes);
        tasks.spawn(async move {
            axum::serve(rpc, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(|e| format!("the XML-RPC listener failed: {e}"))
        });
    }
    {
        // Live pages' streams never end on their own: end them with the server.
        let (live, stop) = (state.live.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            live.stop();
        });
    }
    let web_addr = web.local_addr();
    let web_threads = {
        let app = crate::web::app(state, &store);
        let threads = web.threads();
        let serving = web
            .serve(app, tokio::runtime::Handle::current(), shutdown.clone())
            .context("cannot start the web listener's threads")?;
        tasks.spawn(serving);
        threads
    };
    tracing::info!(
        web = %format!("http://{web_addr}"),
        web_threads,
        xmlrpc = %format!("http://{}", config.xmlrpc_listen),
        version = app::VERSION,
        "copr-pools is serving"
    );

    let ended = tokio::select! {
        _ = wait_for_signal() => None,
        verdict = async {
            match engine_task.as_mut() {
                Some(task) => engine.supervise(task, &shutdown).await,
                None => std::future::pending().await,
            }
        } => Some(Ended::Engine(verdict)),
        task = tasks.join_next() => Some(Ended::Task(match task {
            Some(Ok(Err(why))) => why,
            Some(Err(join)) => format!("a server task panicked: {join}"),
            _ => "a server task stopped without being asked to".to_string(),
        })),
    };
    let failure = match ended {
        None => None,
        Some(Ended::Engine(verdict)) => {
            // Its handle has been awaited to the end.
            engine_task = None;
            verdict
                .err()
                .map(|e| format!("the allocation engine stopped: {e}"))
        }
        Some(Ended::Task(why)) => Some(why),
    };
    match &failure {
        None => tracing::info!("shutting down"),
        Some(why) => {
            tracing::error!(reason = %why, "shutting down after a failure; exiting non-zero")
        }
    }
    shutdown.cancel();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async {
        if let Some(task) = engine_task {
            let _ = task.await;
        }
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            seconds = grace.as_secs(),
            "some connections were still open after the grace period; closing them"
        );
    }
    db.close().await.ok();
    match failure {
        None => Ok(()),
        Some(why) => Err(anyhow::anyhow!(why)),
    }
}

/// What ended the serving, other than a signal.
enum Ended {
    Engine(Result<(), crate::engine::EngineError>),
    Task(String),
}

pub fn engine_settings(config: &Config) -> EngineSettings {
    let mut settings = EngineSettings::new(config.log_dir.clone());
    settings.period = Duration::from_secs(config.engine_period_secs);
    settings.livecheck_concurrency = config.livecheck_concurrency;
    settings.hooks.env = HookEnv::from_process(&config.hook_env_passthrough);
    settings.hooks.secrets_dir = config.data_dir.join("hook-secrets");
    settings
}

/// Imports `pools_file` like `pools import`: all or nothing, problems logged. Pools it does
/// not name are left as they are.
async fn import_pools_file(db: &sea_orm::DatabaseConnection, file: &Path) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read pools_file; the pools stay as they were");
            return;
        }
    };
    let imported = match crate::pools::check_pools_yaml(db, &text).await {
        Ok(Ok(i)) => i,
        Ok(Err(problems)) => {
            for p in &problems {
                tracing::error!(file = %file.display(), problem = %p, "pools_file refused");
            }
            tracing::error!(file = %file.display(), problems = problems.len(), "pools_file has problems; the pools stay as they were");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check pools_file; the pools stay as they were");
            return;
        }
    };
    for w in &imported.warnings {
        tracing::warn!(file = %file.display(), warning = %w, "pools_file");
    }
    // The file holds definitions; whether a pool is paused, draining or retired, and which
    // team owns it, are set in copr-pools and survive every reload.
    let mut pools = imported.pools;
    match crate::pools::load_all(db).await {
        Ok((current, _)) => {
            for p in &mut pools {
                if let Some(old) = current.iter().find(|c| c.name == p.name) {
                    p.state = old.state;
                    if p.owner_team_id.is_none() {
                        p.owner_team_id = old.owner_team_id;
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored pools; pools_file not imported");
            return;
        }
    }
    let actor = crate::audit::Actor::System;
    match crate::pools::save(db, &pools, &actor).await {
        Ok(saved) => tracing::info!(
            file = %file.display(),
            created = ?saved.created,
            updated = ?saved.updated,
            unchanged = saved.unchanged.len(),
            "pools_file imported"
        ),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot save pools_file's pools")
        }
    }
}

/// SIGHUP: reads the configuration again and applies what can change while running (`log`,
/// `metrics_allow`, `metrics_token`, `pools_file`); names the keys that need a restart.
async fn reload(state: &AppState, path: Option<&Path>) {
    tracing::info!("SIGHUP: reloading the configuration");
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration not reloaded; the running one stays");
            return;
        }
    };
    if let Err(why) = telemetry::set_filter(&new.log) {
        tracing::warn!(reason = %why, "log filter not changed");
    }
    state
        .metrics
        .set_access(crate::metrics::Access::from_config(&new));
    let restart = state.config.needs_restart_for(&new);
    if !restart.is_empty() {
        tracing::warn!(keys = ?restart, "changed settings that apply at the next restart");
    }
    if let Some(file) = &new.pools_file {
        import_pools_file(&state.db, file).await;
        state.engine.wake();
    }
    tracing::info!("configuration reloaded");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
