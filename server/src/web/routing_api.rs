//! The routing API Copr polls: `GET /api/v1/routing` (JSON) and
//! `GET /api/v1/routing/copr.conf` (Copr's Python configuration), with a bearer token, a
//! strong ETag and `304 Not Modified`; and `GET /api/v1/routing/match`, which tells which
//! tags one build would get (a token or a signed-in session).
//!
//! The polling endpoints sit outside the session layer: they never read or write a session,
//! and a poll costs no database round trip while the rules are unchanged (see
//! [`crate::routing::served`]); tokens found valid are remembered for a few seconds
//! ([`crate::tokens::TokenMemory`]).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{ApiErrorBody, MatchAnswer, MatchedRule, RoutingDocument};

use crate::auth::current::MaybeUser;
use crate::metrics::Metrics;
use crate::routing::served::RoutingCache;
use crate::state::AppState;
use crate::tokens::TokenMemory;

/// The polling routes (no sessions), with their OpenAPI description.
pub fn polling_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routing_json))
        .routes(routes!(routing_python))
}

/// The match route (a token or a session).
pub fn match_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(route_one))
}

/// The enabled rules in order, as Copr's frontend applies them.
#[utoipa::path(
    get,
    path = "/api/v1/routing",
    tag = "routing",
    security(("bearer" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "The ETag of the rules the caller has")),
    responses(
        (status = 200, description = "The rules", body = RoutingDocument,
            headers(("ETag" = String, description = "Strong; changes with the routing version"))),
        (status = 304, description = "The caller's rules are current"),
        (status = 401, description = "No token, or not a live one", body = ApiErrorBody),
        (status = 503, description = "The database did not answer", body = ApiErrorBody),
    )
)]
async fn routing_json(state: Poll, headers: HeaderMap) -> Response {
    serve(state, headers, false).await
}

/// The same rules as Copr's `EXTRA_BUILDCHROOT_TAGS = [...]`, valid Python to include in
/// `copr.conf`.
#[utoipa::path(
    get,
    path = "/api/v1/routing/copr.conf",
    tag = "routing",
    security(("bearer" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "The ETag of the file the caller has")),
    responses(
        (status = 200, description = "The Python assignment", content_type = "text/x-python", body = String,
            headers(("ETag" = String, description = "Strong; changes with the routing version"))),
        (status = 304, description = "The caller's file is current"),
        (status = 401, description = "No token, or not a live one", body = ApiErrorBody),
        (status = 503, description = "The database did not answer", body = ApiErrorBody),
    )
)]
async fn routing_python(state: Poll, headers: HeaderMap) -> Response {
    serve(state, headers, true).await
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({ "error": if status == StatusCode::UNAUTHORIZED { "unauthenticated" } else { "error" }, "message": message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"copr-pools\""),
        );
    }
    r
}

/// What a poll needs of the state: cheap handles only, since Copr polls often (cloning the
/// whole `AppState` per request showed in profiles of the 304 path).
#[derive(Clone)]
struct Poll {
    db: sea_orm::DatabaseConnection,
    tokens: Arc<TokenMemory>,
    routing: Arc<RoutingCache>,
    metrics: Arc<Metrics>,
}

impl FromRequestParts<AppState> for Poll {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Poll, Self::Rejection> {
        Ok(Poll {
            db: state.db.clone(),
            tokens: state.tokens.clone(),
            routing: state.routing.clone(),
            metrics: state.metrics.clone(),
        })
    }
}

/// The token's name, when the request carries a live one.
async fn token_name(
    tokens: &TokenMemory,
    db: &sea_orm::DatabaseConnection,
    headers: &HeaderMap,
) -> Result<Option<String>, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    match tokens.verify(db, presented).await {
        Ok(name) => Ok(name),
        Err(e) => {
            tracing::error!(error = %e, "routing API: checking a token failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database did not answer; try again",
            ))
        }
    }
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

async fn serve(state: Poll, headers: HeaderMap, python: bool) -> Response {
    let format = if python { "python" } else { "json" };
    let name = match token_name(&state.tokens, &state.db, &headers).await {
        Ok(Some(name)) => name,
        Ok(None) => {
            state.metrics.routing_fetch("none", format, 401);
            return refuse(
                StatusCode::UNAUTHORIZED,
                "send an API token as Authorization: Bearer <token> (an admin creates one with copr-pools token create NAME)",
            );
        }
        Err(answer) => return answer,
    };
    let snapshot = match state.routing.current(&state.db).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "routing API: loading the rules failed");
            state.metrics.routing_fetch(&name, format, 503);
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the routing rules could not be loaded; try again",
            );
        }
    };
    let etag = snapshot.etag(python);
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if not_modified(&headers, &etag) {
        state.metrics.routing_fetch(&name, format, 304);
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    state.metrics.routing_fetch(&name, format, 200);
    let (content_type, body) = if python {
        ("text/x-python; charset=utf-8", snapshot.python.clone())
    } else {
        ("application/json", snapshot.json.clone())
    };
    (
        StatusCode::OK,
        common,
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BuildQuery {
    /// A user, or `@group`.
    #[serde(default)]
    owner: String,
    /// A project, or `project:pr:123` for a pull-request directory.
    #[serde(default)]
    project: String,
    /// A chroot, such as `fedora-rawhide-x86_64`.
    #[serde(default)]
    chroot: String,
    /// A package name.
    #[serde(default)]
    package: String,
}

/// Which tags one build gets and which rules gave them: the build string
/// `owner/project[:dirsuffix]/chroot/package`, each rule applied as Python's `re.match`.
#[utoipa::path(
    get,
    path = "/api/v1/routing/match",
    tag = "routing",
    security(("bearer" = []), ("session" = [])),
    params(BuildQuery),
    responses(
        (status = 200, description = "The tags and the rules that gave them", body = MatchAnswer),
        (status = 401, description = "Neither a token nor a session", body = ApiErrorBody),
        (status = 422, description = "A part of the build is missing or malformed", body = ApiErrorBody),
        (status = 503, description = "The database did not answer", body = ApiErrorBody),
    )
)]
async fn route_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    MaybeUser(user): MaybeUser,
    Query(q): Query<BuildQuery>,
) -> Response {
    let who = match user {
        Some(u) => format!("session:{}", u.username),
        None => match token_name(&state.tokens, &state.db, &headers).await {
            Ok(Some(name)) => name,
            Ok(None) => {
                state.metrics.routing_fetch("none", "match", 401);
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "sign in, or send an API token as Authorization: Bearer <token>",
                );
            }
            Err(answer) => return answer,
        },
    };
    let token_label = if who.starts_with("session:") {
        "session"
    } else {
        who.as_str()
    };
    let build = match crate::routing::build_string(&q.owner, &q.project, &q.chroot, &q.package) {
        Ok(b) => b,
        Err(errors) => {
            state.metrics.routing_fetch(token_label, "match", 422);
            return crate::auth::current::ApiError(app::error::AppError::Invalid(errors))
                .into_response();
        }
    };
    let snapshot = match state.routing.current(&state.db).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "routing API: loading the rules failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the routing rules could not be loaded; try again",
            );
        }
    };
    let (tags, rules) = snapshot.route(&build);
    state.metrics.routing_fetch(token_label, "match", 200);
    axum::Json(MatchAnswer {
        build,
        version: snapshot.version,
        tags,
        rules: rules
            .iter()
            .map(|r| MatchedRule {
                position: r.position,
                pattern: r.pattern.clone(),
                tags: r.tags.clone(),
            })
            .collect(),
    })
    .into_response()
}
