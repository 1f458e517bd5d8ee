//! Routing: the rules admins keep (the tags Copr adds to builds whose
//! `owner/project/chroot/package` matches), the tokens Copr polls them with, and "where would
//! my builds go" for teams: each build with the tags it would get and the pool that would
//! take it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::requests::FormValues;
use crate::error::{AppError, FieldError};

/// A rule as the admin page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: i32,
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
    /// Who made it: `admin`, `import`, or a request (`request:<id>`).
    pub origin: String,
    pub enabled: bool,
    pub note: Option<String>,
    pub updated_at: String,
}

impl RuleView {
    /// The request that made it, if one did.
    pub fn request_id(&self) -> Option<i32> {
        self.origin.strip_prefix("request:")?.parse().ok()
    }
}

/// One rule that matched a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedRule {
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
}

/// Where one build goes: its tags, the rules that gave them, and the pools that could take
/// it, best first (none: it would wait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub build: String,
    /// What is wrong with the line, instead of an answer.
    pub error: Option<String>,
    pub tags: Vec<String>,
    pub rules: Vec<MatchedRule>,
    pub pools: Vec<String>,
}

/// The admins' routing page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingPage {
    pub version: i64,
    pub changed_at: String,
    pub rules: Vec<RuleView>,
    /// Problems of the rules as they stand (tags no active pool offers, too many tags for
    /// one build).
    pub checks: Vec<String>,
    pub csrf_token: String,
    pub notice: Option<String>,
    /// The form a failed post came from (`add`, `rule-<id>`), with what was typed.
    pub form: Option<String>,
    pub values: FormValues,
    pub errors: Vec<FieldError>,
    /// The build tester's answer, when it was asked.
    pub tested: Option<Route>,
    pub test_errors: Vec<FieldError>,
}

/// An API token as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub hint: String,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The admins' API tokens page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokensPage {
    pub tokens: Vec<TokenView>,
    pub csrf_token: String,
    pub notice: Option<String>,
    pub values: FormValues,
    pub errors: Vec<FieldError>,
}

/// What a "where would my builds go" preview asks: builds one per line, and, on the request
/// form, the pool being requested (its scope patterns and kind) as if it were approved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewAsk {
    pub team: String,
    pub builds: String,
    /// The requested pool's scope, one pattern per line; empty on the team page.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub pool_kind: String,
    #[serde(default)]
    pub budget: String,
    #[serde(default)]
    pub name: String,
}

/// The server side of the routing pages. Every method authorizes.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait RoutingBackend: Send + Sync + 'static {
    async fn page(&self, test: FormValues) -> Result<RoutingPage, AppError>;
    async fn tokens(&self) -> Result<TokensPage, AppError>;
    async fn preview(&self, ask: PreviewAsk) -> Result<Vec<Route>, AppError>;
}

#[cfg(feature = "ssr")]
fn routing_backend() -> Result<std::sync::Arc<dyn RoutingBackend>, AppError> {
    use_context::<std::sync::Arc<dyn RoutingBackend>>().ok_or_else(|| {
        leptos::logging::error!("no RoutingBackend in the Leptos context");
        AppError::Internal
    })
}

/// The admins' routing page; `test` holds the build tester's fields when it was used.
#[server(prefix = "/api/ui", endpoint = "routing")]
pub async fn get_routing(test: Option<FormValues>) -> Result<RoutingPage, AppError> {
    super::answer(match routing_backend() {
        Ok(b) => b.page(test.unwrap_or_default()).await,
        Err(e) => Err(e),
    })
}

/// The admins' API tokens page.
#[server(prefix = "/api/ui", endpoint = "tokens")]
pub async fn get_tokens() -> Result<TokensPage, AppError> {
    super::answer(match routing_backend() {
        Ok(b) => b.tokens().await,
        Err(e) => Err(e),
    })
}

/// Where a team's builds would go.
#[server(prefix = "/api/ui", endpoint = "route_preview")]
pub async fn route_preview(ask: PreviewAsk) -> Result<Vec<Route>, AppError> {
    super::answer(match routing_backend() {
        Ok(b) => b.preview(ask).await,
        Err(e) => Err(e),
    })
}
