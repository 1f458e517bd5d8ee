//! The web side: the Leptos pages and server functions, sign-in and the operational
//! endpoints, over the state in [`crate::state`].

mod backend;
mod charts;
mod credentials;
mod forms;
mod health;
mod listener;
mod live;
mod openapi;
mod pools;
mod requests;
mod routing;
mod routing_api;
mod stats;
mod tickets_api;

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use app::api::Backend;
use app::{App, shell};
use axum::Router;
use axum::http::HeaderValue;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use tower_http::trace::TraceLayer;

use crate::auth::session::{self, Store};
use crate::auth::{csrf, handlers};
pub use crate::state::AppState;
pub use listener::{Listeners, threads};

/// The app's routes, generated once per process: generating them flips a process-wide
/// "don't load resources" switch in Leptos, which would stall any page rendering at the same
/// moment (leptos-rs/leptos#4773). Several routers in one process (the tests) share this.
static ROUTES: LazyLock<Vec<AxumRouteListing>> = LazyLock::new(|| generate_route_list(App));

/// The web listener's service, with sessions in `store`: Copr's polls answered first, the
/// router for everything else, and the same security headers on every answer.
pub fn app(state: AppState, store: &Store) -> Front {
    Front {
        router: router(state.clone(), store),
        state,
    }
}

/// Routes Copr's polls of the routing rules ([`routing_api::polled`]) past the router, whose
/// routing, layers and extractors made up most of the CPU of a `304`; adds the security
/// headers to every answer.
#[derive(Clone)]
pub struct Front {
    router: Router,
    state: AppState,
}

impl tower::Service<axum::extract::Request> for Front {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = futures_util::future::Map<
        futures_util::future::Either<
            routing_api::Answer,
            axum::routing::future::RouteFuture<Infallible>,
        >,
        fn(
            Result<axum::response::Response, Infallible>,
        ) -> Result<axum::response::Response, Infallible>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        tower::Service::<axum::extract::Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures_util::FutureExt;
        use futures_util::future::Either;
        let answer = match routing_api::polled(req.uri().path()) {
            Some(form) => Either::Left(routing_api::poll(&self.state, form, req)),
            None => Either::Right(self.router.call(req)),
        };
        answer.map(secured as fn(_) -> _)
    }
}

/// The router: pages, server functions, sign-in and the APIs.
fn router(state: AppState, store: &Store) -> Router {
    let routes = ROUTES.clone();
    let backend: Arc<dyn Backend> = Arc::new(backend::ServerBackend {
        state: state.clone(),
    });
    let credentials: Arc<dyn app::api::credentials::CredentialsBackend> =
        Arc::new(credentials::ServerCredentials {
            state: state.clone(),
        });
    let requests: Arc<dyn app::api::requests::RequestsBackend> =
        Arc::new(requests::ServerRequests {
            state: state.clone(),
        });
    let routing: Arc<dyn app::api::routing::RoutingBackend> = Arc::new(routing::ServerRouting {
        state: state.clone(),
    });
    let pools: Arc<dyn app::api::pools::PoolsBackend> = Arc::new(pools::ServerPools {
        state: state.clone(),
    });
    let charts: Arc<dyn app::api::charts::ChartsBackend> = Arc::new(charts::ServerCharts {
        state: state.clone(),
    });
    let context = move || {
        provide_context(charts.clone());
        provide_context(pools.clone());
        provide_context(backend.clone());
        provide_context(credentials.clone());
        provide_context(requests.clone());
        provide_context(routing.clone());
    };
    let inactivity = Duration::from_secs(state.config.session_inactivity_secs);
    let (api_free, api_sessions) =
        openapi::api_routes(tickets_api::routes(), routing_api::match_routes());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/stats", get(stats::stats))
        .merge(handlers::routes())
        .merge(credentials::routes())
        .merge(requests::routes())
        .merge(api_sessions)
        .merge(routing::routes())
        .merge(pools::routes())
        .merge(live::routes())
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            count_requests,
        ))
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(axum::middleware::from_fn_with_state(
            inactivity,
            session::keep_alive,
        ))
        .layer(store.layer(inactivity))
        .layer(axum::middleware::from_fn(csrf::refuse_cross_site))
        // Spans name the path only: query strings carry sign-in codes and states.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state.clone())
        // Polled by Copr and Prometheus: no sessions, nothing but the answer.
        .merge(
            api_free
                .route("/metrics", get(metrics))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.metrics.clone(),
                    count_requests,
                ))
                .with_state(state),
        )
}

/// `/metrics`: Prometheus metrics in the OpenMetrics text format, for the clients
/// [`crate::metrics::allowed`] lets in.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    peer: Result<
        axum::extract::ConnectInfo<std::net::SocketAddr>,
        axum::extract::rejection::ExtensionRejection,
    >,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let peer = peer.ok().map(|axum::extract::ConnectInfo(a)| a.ip());
    match state.metrics.allows(peer, &headers) {
        Ok(()) => {}
        Err(crate::metrics::Refusal::WrongToken) => {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"copr-pools metrics\"",
                )],
                "That is not metrics_token.\n",
            )
                .into_response();
        }
        Err(crate::metrics::Refusal::NotAllowed) => {
            return (
                StatusCode::FORBIDDEN,
                "Metrics are served to loopback clients only. Add the scraper's address to \
                 metrics_allow, or set metrics_token and send it as a bearer token.\n",
            )
                .into_response();
        }
    }
    if let Err(e) = state.metrics.refresh(&state.db).await {
        tracing::error!(error = %e, "metrics: reading the state from the database failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "The database did not answer; the next scrape will try again.\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Counts each request by its route (the router's pattern, so paths with ids do not make
/// new series), method and status.
async fn count_requests(
    axum::extract::State(metrics): axum::extract::State<Arc<crate::metrics::Metrics>>,
    req: axum::http::Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    if let Some(route) = route {
        metrics.http(
            route.as_str(),
            &method,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    res
}

/// Adds the headers every web response carries: no framing by other sites (clickjacking), no
/// MIME sniffing, and no full URLs (which may carry sign-in codes) sent to other sites. A page
/// may set its own Content-Security-Policy.
fn secure(h: &mut axum::http::HeaderMap) {
    use axum::http::header;
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
}

/// [`secure`] as the last step of every answer.
fn secured(
    answer: Result<axum::response::Response, Infallible>,
) -> Result<axum::response::Response, Infallible> {
    answer.map(|mut r| {
        secure(r.headers_mut());
        r
    })
}
