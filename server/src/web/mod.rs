//! The web side: the Leptos pages and server functions, the operational endpoints, and the
//! state they share.

mod backend;
mod health;

use std::sync::Arc;

use app::api::Backend;
use app::{App, shell};
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use sea_orm::DatabaseConnection;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::engine::Engine;

/// What every handler and server function can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub config: Arc<Config>,
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

/// The whole web router.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let backend: Arc<dyn Backend> = Arc::new(backend::ServerBackend {
        state: state.clone(),
    });
    let context = move || provide_context(backend.clone());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
