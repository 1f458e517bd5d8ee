//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! attributes and the types they answer with, and served at `/api/v1/openapi.json`. The
//! routes are registered through [`utoipa_axum`], so a route and its description are one
//! declaration; a test checks every `/api/v1` path in the source is in the document and that
//! real answers match their schemas.

use std::sync::Arc;

use axum::Extension;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Every `/api/v1` error: a stable `error` word and a sentence saying what to fix.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// `unauthenticated`, `invalid`, `not_found`, `unavailable`, …
    pub error: String,
    pub message: String,
}

/// One rule as Copr applies it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingRule {
    /// A Python regular expression, applied with `re.match` to
    /// `owner/project[:dirsuffix]/chroot/package`.
    pub pattern: String,
    pub tags: Vec<String>,
}

/// `GET /api/v1/routing` (rendered once per version by `routing::served`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDocument {
    /// Increments with every change of the rules.
    pub version: i64,
    /// RFC 3339.
    pub generated_at: String,
    /// The enabled rules, in order.
    pub rules: Vec<RoutingRule>,
}

/// A rule that matched the build.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchedRule {
    /// The rule's place among all rules, as the admin page numbers it.
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
}

/// `GET /api/v1/routing/match`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchAnswer {
    /// The string the rules were applied to.
    pub build: String,
    pub version: i64,
    /// The tags of every matching rule, in rule order.
    pub tags: Vec<String>,
    pub rules: Vec<MatchedRule>,
}

/// The document's frame: title, tags and how callers authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "copr-pools",
        description = "Self-service builder pools for Fedora Copr: the routing rules Copr's frontend polls, and why tickets wait. resalloc's XML-RPC API is served on its own listener and is not described here."
    ),
    modifiers(&Security),
    tags(
        (name = "routing", description = "The tags Copr adds to builds, by rule"),
        (name = "tickets", description = "Tickets and why they wait"),
        (name = "meta", description = "This document"),
    )
)]
struct Frame;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `copr-pools token create NAME` or Admin → API tokens",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::session::COOKIE,
            ))),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of /api/v1", content_type = "application/json", body = Object))
)]
async fn document(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json((*doc).clone())
}

/// The `/api/v1` routes of `session_free` (served outside the session layer) and `with_session`,
/// each with the document at `/api/v1/openapi.json` in the session-free part.
pub fn api_routes(
    session_free: OpenApiRouter<AppState>,
    with_session: OpenApiRouter<AppState>,
) -> (axum::Router<AppState>, axum::Router<AppState>) {
    let (free, free_doc) = OpenApiRouter::with_openapi(Frame::openapi())
        .merge(session_free)
        .routes(routes!(document))
        .split_for_parts();
    let (sessions, sessions_doc) = with_session.split_for_parts();
    let mut doc = free_doc;
    doc.merge(sessions_doc);
    doc.merge(super::routing_api::PollingDoc::openapi());
    (free.layer(Extension(Arc::new(doc))), sessions)
}
