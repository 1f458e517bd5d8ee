//! What the browser and the server exchange: the data of each page, the server functions that
//! fetch it, and (server only) the [`Backend`] port through which those functions reach the
//! database without this crate knowing about it.

pub mod charts;
pub mod credentials;
pub mod pools;
pub mod requests;
pub mod routing;
pub mod tickets;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One pool as the public status page shows it (the columns of resalloc-webui's `/pools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub description: Option<String>,
    /// `active`, `paused`, `draining` or `retired`.
    pub state: String,
    pub tags: Vec<String>,
    pub tags_on_demand: Vec<String>,
    pub max: i64,
    pub up: i64,
    pub ready: i64,
    pub taken: i64,
    pub starting: i64,
    pub delete_requested: i64,
    pub deleting: i64,
    pub releasing: i64,
    /// Exponential moving average of start outcomes (1 = every start succeeded).
    pub start_success_rate: Option<f64>,
    /// Exponential moving average of successful start times, in seconds.
    pub start_time_avg: Option<f64>,
    /// Its month against its monthly cap, from 80 % on (see [`requests::cap_note`]).
    #[serde(default)]
    pub cap: Option<requests::CapNote>,
}

/// Waiting tickets that asked for the same tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueGroup {
    pub tags: Vec<String>,
    pub waiting: i64,
    pub oldest_age_secs: f64,
    /// False when no active pool offers all of these tags: such tickets never resolve.
    pub servable: bool,
    /// Why they wait, one line per distinct reason, in queue order.
    #[serde(default)]
    pub reasons: Vec<QueueReason>,
}

/// How many tickets of a group wait for one reason; `text` is the first one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueReason {
    pub code: String,
    pub text: String,
    pub count: i64,
}

/// Everything the public status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub pools: Vec<PoolStatus>,
    pub queue: Vec<QueueGroup>,
    /// Unix time (seconds) at which the server took this snapshot.
    pub generated_at: i64,
}

/// What the status page's live stream sends: the sections that changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub pools: Option<Vec<PoolStatus>>,
    pub queue: Option<Vec<QueueGroup>>,
    pub charts: Option<Vec<charts::Chart>>,
}

/// What a team page's live stream sends: the sections that changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamUpdate {
    pub pools: Option<Vec<PoolBrief>>,
    pub charts: Option<Vec<charts::Chart>>,
}

/// The signed-in user, as the navigation shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: String,
    pub display_name: Option<String>,
    pub teams: Vec<String>,
    pub admin: bool,
}

/// Who is signed in, and how one signs in here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub user: Option<UserSummary>,
    /// The development sign-in is on (loopback only): pages show a warning banner.
    pub dev_login: bool,
    /// A real OpenID provider is configured.
    pub oidc: bool,
    /// The session's token for forms (sign-out, development sign-in).
    pub csrf_token: String,
}

/// Why the last sign-in of this browser failed, in words for the person (kept in the session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInFailure {
    /// A stable code: denied, attempt, state, issuer, provider, unreachable, token, userinfo, config.
    pub reason: String,
    pub detail: String,
}

/// One of the user's teams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSummary {
    pub name: String,
    pub members: i64,
    pub pools: i64,
}

/// A team member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub username: String,
    pub display_name: Option<String>,
    /// RFC 3339, or None if they never signed in since the team appeared.
    pub last_sign_in: Option<String>,
}

/// A pool in a short listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolBrief {
    pub name: String,
    /// The team that owns it, if any.
    pub team: Option<String>,
    pub state: String,
    /// Why the pool is in its state, when something other than an admin put it there.
    pub state_reason: Option<String>,
    pub max: i64,
    pub max_starting: i64,
    pub max_prealloc: i64,
    pub up: i64,
    pub taken: i64,
    pub ready: i64,
    pub starting: i64,
    /// This month so far.
    pub month_hours: f64,
    pub month_cost: f64,
    pub monthly_cap: Option<f64>,
    pub price_per_hour: Option<f64>,
    /// Made from a request: its team may ask to change it.
    pub from_request: bool,
}

/// A team's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamView {
    pub name: String,
    pub members: Vec<MemberView>,
    pub pools: Vec<PoolBrief>,
    /// The team's cloud credentials, without their secrets.
    pub credentials: Vec<credentials::CredentialView>,
    /// The token the page's forms (pause, resume) post back.
    pub csrf_token: String,
    /// The outcome of the last pool action posted from the page.
    pub notice: Option<String>,
    pub errors: Vec<crate::error::FieldError>,
}

/// The engine's figures for admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineView {
    /// This replica runs the engine.
    pub running_here: bool,
    pub passes: u64,
    pub conflicts: u64,
    pub tickets_assigned: u64,
    pub last_pass_secs_ago: Option<f64>,
    pub last_pass_ms: f64,
    pub hooks_running: i64,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: i32,
    /// RFC 3339 UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub details: String,
}

/// The admin overview: the engine and a page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminOverview {
    pub engine: EngineView,
    pub pools_by_state: Vec<(String, i64)>,
    pub users: i64,
    pub teams: i64,
    pub audit: Vec<AuditView>,
    /// Pass as `before` to read the next (older) page.
    pub older: Option<i32>,
    /// Every pool, with what admins may do to it.
    pub pools: Vec<PoolBrief>,
    /// Requests waiting for a decision.
    pub pending_requests: i64,
    /// The outcome of the last pool action posted from the page.
    pub notice: Option<String>,
    pub errors: Vec<crate::error::FieldError>,
    pub csrf_token: String,
}

/// The server side of the UI's data, provided through Leptos context by the server crate.
///
/// Implementations do the authorization: a server function only forwards to one method.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn status(&self) -> Result<StatusSnapshot, AppError>;
    async fn session(&self) -> Result<SessionInfo, AppError>;
    async fn my_teams(&self) -> Result<Vec<TeamSummary>, AppError>;
    async fn team(&self, name: String) -> Result<TeamView, AppError>;
    async fn admin_overview(&self, before: Option<i32>) -> Result<AdminOverview, AppError>;
    async fn sign_in_failure(&self) -> Result<Option<SignInFailure>, AppError>;
    async fn search_tickets(&self, query: String) -> Result<tickets::TicketSearch, AppError>;
}

/// The backend of the current request.
#[cfg(feature = "ssr")]
pub fn backend() -> Result<std::sync::Arc<dyn Backend>, AppError> {
    use_context::<std::sync::Arc<dyn Backend>>().ok_or_else(|| {
        leptos::logging::error!("no Backend in the Leptos context: the server did not provide it");
        AppError::Internal
    })
}

/// Gives a failed server function the HTTP status of its error (401, 403, 404, …), so the
/// endpoints behind the pages answer like an API.
#[cfg(feature = "ssr")]
pub(crate) fn answer<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(e) = &result
        && let Some(response) = use_context::<leptos_axum::ResponseOptions>()
        && let Ok(status) = http::StatusCode::from_u16(e.status_code())
    {
        response.set_status(status);
    }
    result
}

/// The public status: pools, their machines and the queue of waiting tickets.
#[server(prefix = "/api/ui", endpoint = "status")]
pub async fn get_status() -> Result<StatusSnapshot, AppError> {
    answer(match backend() {
        Ok(b) => b.status().await,
        Err(e) => Err(e),
    })
}

/// Who is signed in (also creates the session's form token).
#[server(prefix = "/api/ui", endpoint = "session")]
pub async fn get_session() -> Result<SessionInfo, AppError> {
    answer(match backend() {
        Ok(b) => b.session().await,
        Err(e) => Err(e),
    })
}

/// The signed-in user's teams.
#[server(prefix = "/api/ui", endpoint = "my_teams")]
pub async fn get_my_teams() -> Result<Vec<TeamSummary>, AppError> {
    answer(match backend() {
        Ok(b) => b.my_teams().await,
        Err(e) => Err(e),
    })
}

/// A team's members and pools, for its members and admins.
#[server(prefix = "/api/ui", endpoint = "team")]
pub async fn get_team(name: String) -> Result<TeamView, AppError> {
    answer(match backend() {
        Ok(b) => b.team(name).await,
        Err(e) => Err(e),
    })
}

/// The engine's state and the audit log, for admins.
#[server(prefix = "/api/ui", endpoint = "admin_overview")]
pub async fn get_admin_overview(before: Option<i32>) -> Result<AdminOverview, AppError> {
    answer(match backend() {
        Ok(b) => b.admin_overview(before).await,
        Err(e) => Err(e),
    })
}

/// Why this browser's last sign-in failed, if it did.
#[server(prefix = "/api/ui", endpoint = "sign_in_failure")]
pub async fn get_sign_in_failure() -> Result<Option<SignInFailure>, AppError> {
    answer(match backend() {
        Ok(b) => b.sign_in_failure().await,
        Err(e) => Err(e),
    })
}
