//! The routing API Copr polls: `GET /api/v1/routing` (JSON) and
//! `GET /api/v1/routing/copr.conf` (Copr's Python configuration), with a bearer token, a
//! strong ETag and `304 Not Modified`; and `GET /api/v1/routing/match`, which tells which
//! tags one build would get (a token or a signed-in session).
//!
//! The polling endpoints are answered before the router ([`super::Front`] calls [`poll`]): they
//! need none of its routing, layers or extractors, which were most of the CPU of a `304`.
//! They never read or write a session, and a poll costs no database round trip while the
//! rules are unchanged (see [`crate::routing::served`]); tokens found valid are remembered
//! for a few seconds ([`crate::tokens::TokenMemory`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{ApiErrorBody, MatchAnswer, MatchedRule, RoutingDocument};

use crate::auth::current::MaybeUser;
use crate::routing::served::Snapshot;
use crate::state::AppState;
use crate::tokens::TokenMemory;

/// What Copr polls: the rules as JSON or as Copr's Python configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Python,
}

impl Form {
    /// The router pattern it would have: the `route` label of its HTTP metrics.
    fn route(self) -> &'static str {
        match self {
            Form::Json => "/api/v1/routing",
            Form::Python => "/api/v1/routing/copr.conf",
        }
    }

    /// The `format` label of its routing metrics.
    fn label(self) -> &'static str {
        match self {
            Form::Json => "json",
            Form::Python => "python",
        }
    }
}

/// Which polling endpoint `path` is, if any.
pub fn polled(path: &str) -> Option<Form> {
    [Form::Json, Form::Python]
        .into_iter()
        .find(|f| f.route() == path)
}

/// The answer to a poll: ready at once when the token is remembered and the rules are fresh
/// (nearly every poll: nothing is awaited, nothing boxed), otherwise once the database answered.
pub type Answer =
    Either<Ready<Result<Response, Infallible>>, BoxFuture<'static, Result<Response, Infallible>>>;

/// Answers a request for `form` (see [`polled`]), counting it as the router counts its routes.
pub fn poll<B: Send + 'static>(state: &AppState, form: Form, req: Request<B>) -> Answer {
    let started = std::time::Instant::now();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let refused = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
        return Either::Left(ready(Ok(counted(state, form, &req, started, refused))));
    }
    if let (Some(name), Some(snapshot)) = (
        state.tokens.remembered(bearer(req.headers())),
        state.routing.fresh(),
    ) {
        let answer = respond(state, req.headers(), form, &name, &snapshot);
        return Either::Left(ready(Ok(counted(state, form, &req, started, answer))));
    }
    let state = state.clone();
    Either::Right(Box::pin(async move {
        let answer = serve(&state, req.headers(), form).await;
        Ok(counted(&state, form, &req, started, answer))
    }))
}

/// `answer`, counted in the HTTP metrics.
fn counted<B>(
    state: &AppState,
    form: Form,
    req: &Request<B>,
    started: std::time::Instant,
    answer: Response,
) -> Response {
    state.metrics.http(
        form.route(),
        req.method(),
        answer.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    answer
}

/// The OpenAPI description of the polling endpoints (they are not routes of the router).
#[derive(utoipa::OpenApi)]
#[openapi(paths(routing_json, routing_python))]
pub struct PollingDoc;

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
#[allow(dead_code)] // its description only: `poll` answers it
fn routing_json() {}

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
#[allow(dead_code)] // its description only: `poll` answers it
fn routing_python() {}

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

/// The bearer token a request carries, or "".
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

/// The token's name, when the request carries a live one.
async fn token_name(
    tokens: &TokenMemory,
    db: &sea_orm::DatabaseConnection,
    headers: &HeaderMap,
) -> Result<Option<Arc<str>>, Response> {
    let presented = bearer(headers);
    if presented.is_empty() {
        return Ok(None);
    }
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
fn not_modified(headers: &HeaderMap, etag: &[u8]) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t.as_bytes() == etag || t == "*")
}

async fn serve(state: &AppState, headers: &HeaderMap, form: Form) -> Response {
    let format = form.label();
    let name = match token_name(&state.tokens, &state.db, headers).await {
        Ok(Some(name)) => name,
        Ok(None) => {
            state.metrics.routing_fetch(&"none".into(), format, 401);
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
    respond(state, headers, form, &name, &snapshot)
}

/// The rules of `snapshot` in `form`, or `304` when the caller has them, for token `name`.
fn respond(
    state: &AppState,
    headers: &HeaderMap,
    form: Form,
    name: &Arc<str>,
    snapshot: &Snapshot,
) -> Response {
    let etag = snapshot.etag(form == Form::Python);
    let fresh = not_modified(headers, etag);
    let status = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    state
        .metrics
        .routing_fetch(name, form.label(), status.as_u16());
    let mut response = if fresh {
        Response::new(Body::empty())
    } else {
        let (content_type, body) = match form {
            Form::Json => ("application/json", &snapshot.json),
            Form::Python => ("text/x-python; charset=utf-8", &snapshot.python),
        };
        ([(header::CONTENT_TYPE, content_type)], body.clone()).into_response()
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    // Room for these and the security headers at once.
    h.reserve(8);
    h.insert(
        header::ETAG,
        HeaderValue::from_maybe_shared(etag.clone()).expect("an ETag is a header value"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
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
    // Counted by token name, or as `session` for a signed-in user.
    let token_label: Arc<str> = match user {
        Some(_) => "session".into(),
        None => match token_name(&state.tokens, &state.db, &headers).await {
            Ok(Some(name)) => name,
            Ok(None) => {
                state.metrics.routing_fetch(&"none".into(), "match", 401);
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "sign in, or send an API token as Authorization: Bearer <token>",
                );
            }
            Err(answer) => return answer,
        },
    };
    let build = match crate::routing::build_string(&q.owner, &q.project, &q.chroot, &q.package) {
        Ok(b) => b,
        Err(errors) => {
            state.metrics.routing_fetch(&token_label, "match", 422);
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
    state.metrics.routing_fetch(&token_label, "match", 200);
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
