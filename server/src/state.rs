//! What every handler, server function and page can reach: the database, the engine, the
//! configuration, the OpenID provider. Its own module, so that the web side and sign-in
//! (`auth/`) both depend on it rather than on each other.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use sea_orm::DatabaseConnection;

use crate::accounts::GroupPolicy;
use crate::auth::oidc::Provider;
use crate::config::Config;
use crate::credentials::Vault;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::routing::served::RoutingCache;

/// What every handler and server function can reach. Cloned for every request (axum hands
/// each handler its own copy), so a clone is one reference count: cloning the fields
/// themselves, the Leptos options' strings among them, was most of the cost of a `304` to
/// Copr's poll.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The state itself, reached through [`AppState`].
pub struct Shared {
    pub leptos_options: LeptosOptions,
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub config: Arc<Config>,
    /// The OpenID provider, when one is configured.
    pub oidc: Option<Arc<Provider>>,
    /// Teams' cloud credentials.
    pub vault: Vault,
    /// The routing rules as Copr polls them.
    pub routing: Arc<RoutingCache>,
    /// API tokens verified lately.
    pub tokens: Arc<crate::tokens::TokenMemory>,
    pub metrics: Arc<Metrics>,
    /// Why tickets wait, computed at most once a second for every reader.
    pub waiting: Arc<crate::waiting::WaitingCache>,
    /// The pages open in browsers, kept up to date over server-sent events.
    pub live: Arc<crate::live::Live>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        db: DatabaseConnection,
        engine: Engine,
        vault: Vault,
    ) -> AppState {
        AppState(Arc::new(Shared {
            vault,
            routing: Arc::new(RoutingCache::new(std::time::Duration::from_millis(
                config.routing_refresh_ms,
            ))),
            tokens: Arc::default(),
            metrics: Arc::new(Metrics::new(
                engine.metrics(),
                crate::metrics::Access::from_config(&config),
            )),
            waiting: Arc::new(crate::waiting::WaitingCache::following(engine.changes())),
            live: Arc::default(),
            leptos_options: leptos_options(&config),
            oidc: config.oidc.clone().map(|c| Arc::new(Provider::new(c))),
            db,
            engine,
            config,
        }))
    }

    pub fn group_policy(&self) -> GroupPolicy {
        GroupPolicy {
            admin_groups: self.config.admin_groups.clone(),
            team_groups: self.config.team_groups.clone(),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What Leptos' routes take from the state.
impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> LeptosOptions {
        state.leptos_options.clone()
    }
}

/// The Leptos options for serving the built site from `site_root`.
pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("copr-pools")
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}
