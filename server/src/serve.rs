//! `copr-pools serve`: the web listener, the XML-RPC listener and the engine, with structured
//! logs and a graceful shutdown on SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::auth::session::Store;
use crate::config::Config;
use crate::engine::{Engine, EngineSettings};
use crate::web::{AppState, router};
use crate::{db, telemetry, xmlrpc};

pub async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config);
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
    let engine = Engine::new(db.clone(), engine_settings(&config));
    let shutdown = CancellationToken::new();
    let config = Arc::new(config);

    let web = tokio::net::TcpListener::bind(config.listen)
        .await
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
    let state = AppState::new(config.clone(), db.clone(), engine.clone());
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (store, stop) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = store.delete_expired_every(Duration::from_secs(300)) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    if config.engine {
        let (engine, stop) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move { engine.run(stop).await });
    }
    {
        let stop = shutdown.clone();
        let app = xmlrpc::router(engine.clone(), config.xmlrpc_max_body_bytes);
        tasks.spawn(async move {
            if let Err(e) = axum::serve(rpc, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "the XML-RPC listener failed");
            }
        });
    }
    {
        let stop = shutdown.clone();
        let app = router(state, &store);
        tasks.spawn(async move {
            if let Err(e) = axum::serve(web, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "the web listener failed");
            }
        });
    }
    tracing::info!(
        web = %format!("http://{}", config.listen),
        xmlrpc = %format!("http://{}", config.xmlrpc_listen),
        version = app::VERSION,
        "copr-pools is serving"
    );

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = grace.as_secs(),
            "some connections were still open after the grace period; closing them"
        );
    }
    db.close().await.ok();
    Ok(())
}

pub fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        log_dir: config.log_dir.clone(),
        period: Duration::from_secs(config.engine_period_secs),
        livecheck_concurrency: config.livecheck_concurrency,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
