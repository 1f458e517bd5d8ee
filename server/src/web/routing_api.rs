//! The routing API Copr polls: `GET /api/v1/routing` (JSON) and
//! `GET /api/v1/routing/copr.conf` (Copr's Python configuration), with a bearer token, a
//! strong ETag and `304 Not Modified`; and `GET /api/v1/routing/match`, which tells which
//! tags one build would get (a token or a signed-in session).
//!
//! The polling endpoints sit outside the session layer: they never read or write a session,
//! and a poll costs no database round trip while the rules are unchanged (see
//! [`crate::routing::served`]); tokens found valid are remembered for a few seconds
//! ([`crate::tokens::TokenMemory`]).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::auth::current::MaybeUser;
use crate::state::AppState;

/// The polling routes (no sessions).
pub fn polling_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/routing", get(|s, h| serve(s, h, false)))
        .route("/api/v1/routing/copr.conf", get(|s, h| serve(s, h, true)))
}

/// The match route (a token or a session).
pub fn match_routes() -> Router<AppState> {
    Router::new().route("/api/v1/routing/match", get(route_one))
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

/// The token's name, when the request carries a live one.
async fn token_name(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    match state.tokens.verify(&state.db, presented).await {
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

async fn serve(State(state): State<AppState>, headers: HeaderMap, python: bool) -> Response {
    let format = if python { "python" } else { "json" };
    let name = match token_name(&state, &headers).await {
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

#[derive(Deserialize)]
struct BuildQuery {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    chroot: String,
    #[serde(default)]
    package: String,
}

async fn route_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    MaybeUser(user): MaybeUser,
    Query(q): Query<BuildQuery>,
) -> Response {
    let who = match user {
        Some(u) => format!("session:{}", u.username),
        None => match token_name(&state, &headers).await {
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
    axum::Json(json!({
        "build": build,
        "version": snapshot.version,
        "tags": tags,
        "rules": rules.iter().map(|r| json!({ "position": r.position, "pattern": r.pattern, "tags": r.tags })).collect::<Vec<_>>(),
    }))
    .into_response()
}
