//! The server's implementation of the UI's [`Backend`] port: each method authorizes, calls one
//! domain function and maps its errors to the shared vocabulary.

use app::api::tickets::TicketSearch;
use app::api::*;
use app::error::AppError;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use tower_sessions::Session;

use super::AppState;
use super::forms::take_flash;
use crate::accounts::{self, CurrentUser};
use crate::auth::csrf;
use crate::auth::current::{current_user, require, require_admin, require_member};
use crate::engine::store::pool_counts;
use crate::entities::{audit_events, memberships, pools, teams, users};

pub struct ServerBackend {
    pub state: AppState,
}

/// How many audit events one admin page shows.
const AUDIT_PAGE: u64 = 50;

/// Logs a database error and hides it from the user.
fn internal(context: &'static str) -> impl FnOnce(sea_orm::DbErr) -> AppError {
    move |e| {
        tracing::error!(error = %e, context, "database error");
        AppError::Internal
    }
}

/// Pools with their live counts and this month's usage.
pub(super) async fn pool_briefs(
    db: &sea_orm::DatabaseConnection,
    rows: Vec<pools::Model>,
) -> Result<Vec<PoolBrief>, AppError> {
    let counts = pool_counts(db).await.map_err(internal("pool counts"))?;
    let month = crate::usage::this_month(db)
        .await
        .map_err(internal("usage"))?;
    let team_names: std::collections::BTreeMap<i32, String> = teams::Entity::find()
        .all(db)
        .await
        .map_err(internal("teams"))?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    Ok(rows
        .into_iter()
        .map(|p| {
            let c = counts.get(&p.name).cloned().unwrap_or_default();
            let m = month.get(&p.name).copied().unwrap_or_default();
            PoolBrief {
                team: p.owner_team_id.and_then(|t| team_names.get(&t).cloned()),
                state: p.state,
                state_reason: p.state_reason,
                max: i64::from(p.max),
                max_starting: i64::from(p.max_starting),
                max_prealloc: i64::from(p.max_prealloc),
                up: c.up,
                taken: c.taken,
                ready: c.ready,
                starting: c.starting,
                month_hours: m.machine_hours,
                month_cost: m.cost,
                monthly_cap: p.monthly_cap,
                price_per_hour: p.price_per_hour,
                from_request: p.request_id.is_some(),
                name: p.name,
            }
        })
        .collect())
}

/// The request's session, inside a server function or a page render.
pub(super) async fn request_session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|e| {
        tracing::error!(error = %e, "no session layer around the server functions");
        AppError::Internal
    })
}

/// The signed-in user of the request, if any.
pub(super) async fn request_user(state: &AppState) -> Result<Option<CurrentUser>, AppError> {
    let session = request_session().await?;
    current_user(&session, &state.db, &state.config).await
}

/// The request's form token (and, for a visitor, the form cookie set on the response).
pub(super) async fn request_form_token(session: &Session) -> Result<String, AppError> {
    let headers = leptos_axum::extract::<http::HeaderMap>()
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read the request headers");
            AppError::Internal
        })?;
    // Anonymous visitors get their form token as a cookie: nothing is stored for them.
    let (token, set_cookie) = csrf::form_token(session, &headers).await;
    if let Some(cookie) = set_cookie {
        let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>();
        match (response, http::HeaderValue::from_str(&cookie)) {
            (Some(response), Ok(value)) => response.append_header(http::header::SET_COOKIE, value),
            _ => tracing::warn!("cannot set the form cookie on this response"),
        }
    }
    Ok(token)
}

impl ServerBackend {
    async fn session(&self) -> Result<Session, AppError> {
        request_session().await
    }

    async fn user(&self) -> Result<Option<CurrentUser>, AppError> {
        request_user(&self.state).await
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn status(&self) -> Result<StatusSnapshot, AppError> {
        crate::status::snapshot(&self.state.db, &self.state.waiting)
            .await
            .map_err(internal("status snapshot"))
    }

    async fn search_tickets(&self, query: String) -> Result<TicketSearch, AppError> {
        if query.len() > 200 {
            return Err(AppError::Invalid(vec![app::error::FieldError {
                field: "q".into(),
                message: "Search for at most 200 characters: an owner, a project, owner/project or a ticket id.".into(),
            }]));
        }
        crate::waiting::search(&self.state.db, &self.state.waiting, &query)
            .await
            .map_err(internal("ticket search"))
    }

    async fn session(&self) -> Result<SessionInfo, AppError> {
        let session = ServerBackend::session(self).await?;
        let user = current_user(&session, &self.state.db, &self.state.config).await?;
        let token = request_form_token(&session).await?;
        Ok(SessionInfo {
            user: user.map(|u| UserSummary {
                username: u.username,
                display_name: u.display_name,
                teams: u.teams,
                admin: u.admin,
            }),
            dev_login: self.state.config.dev_login,
            oidc: self.state.oidc.is_some(),
            csrf_token: token,
        })
    }

    async fn my_teams(&self) -> Result<Vec<TeamSummary>, AppError> {
        let user = require(self.user().await?)?;
        let db = &self.state.db;
        let mut out = Vec::new();
        for name in &user.teams {
            let Some(team) = accounts::team(db, name).await.map_err(internal("team"))? else {
                continue;
            };
            let members = memberships::Entity::find()
                .filter(memberships::Column::TeamId.eq(team.id))
                .count(db)
                .await
                .map_err(internal("members"))?;
            let owned = pools::Entity::find()
                .filter(pools::Column::OwnerTeamId.eq(team.id))
                .count(db)
                .await
                .map_err(internal("pools"))?;
            out.push(TeamSummary {
                name: team.name,
                members: members as i64,
                pools: owned as i64,
            });
        }
        Ok(out)
    }

    async fn team(&self, name: String) -> Result<TeamView, AppError> {
        let user = require(self.user().await?)?;
        require_member(&user, &name)?;
        let db = &self.state.db;
        let team = accounts::team(db, &name)
            .await
            .map_err(internal("team"))?
            .ok_or_else(|| AppError::NotFound(format!("team {name}")))?;
        let members = accounts::team_members(db, &name)
            .await
            .map_err(internal("members"))?
            .unwrap_or_default();
        let owned = pools::Entity::find()
            .filter(pools::Column::OwnerTeamId.eq(team.id))
            .order_by_asc(pools::Column::Name)
            .all(db)
            .await
            .map_err(internal("pools"))?;
        let credentials = self.state.vault.list(&name).await.map_err(AppError::from)?;
        let session = ServerBackend::session(self).await?;
        let flash = take_flash(&session, |f| f == "pool").await;
        Ok(TeamView {
            name: team.name,
            credentials,
            csrf_token: request_form_token(&session).await?,
            notice: flash.as_ref().and_then(|f| f.notice.clone()),
            errors: flash.map(|f| f.state.errors).unwrap_or_default(),
            members: members
                .into_iter()
                .map(|m| MemberView {
                    username: m.username,
                    display_name: m.display_name,
                    last_sign_in: m.last_login_at.map(|t| t.to_rfc3339()),
                })
                .collect(),
            pools: pool_briefs(db, owned).await?,
        })
    }

    async fn sign_in_failure(&self) -> Result<Option<SignInFailure>, AppError> {
        let session = ServerBackend::session(self).await?;
        session
            .get(crate::auth::session::SIGN_IN_FAILURE)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read the session");
                AppError::Internal
            })
    }

    async fn admin_overview(&self, before: Option<i32>) -> Result<AdminOverview, AppError> {
        let user = require(self.user().await?)?;
        require_admin(&user)?;
        let db = &self.state.db;
        let stats = self.state.engine.stats();
        let now = chrono::Utc::now().timestamp_millis();
        let session = ServerBackend::session(self).await?;
        let flash = take_flash(&session, |f| f == "pool" || f.starts_with("pool-")).await;
        let mut q = audit_events::Entity::find().order_by_desc(audit_events::Column::Id);
        if let Some(b) = before {
            q = q.filter(audit_events::Column::Id.lt(b));
        }
        let events = q
            .limit(AUDIT_PAGE + 1)
            .all(db)
            .await
            .map_err(internal("audit"))?;
        let older = (events.len() as u64 > AUDIT_PAGE).then(|| events[AUDIT_PAGE as usize - 1].id);
        let mut by_state: std::collections::BTreeMap<String, i64> = Default::default();
        for p in pools::Entity::find()
            .all(db)
            .await
            .map_err(internal("pools"))?
        {
            *by_state.entry(p.state).or_default() += 1;
        }
        Ok(AdminOverview {
            engine: EngineView {
                running_here: stats.leader,
                passes: stats.passes,
                conflicts: stats.conflicts,
                tickets_assigned: stats.assigned,
                last_pass_secs_ago: (stats.last_pass_at_ms > 0)
                    .then(|| (now - stats.last_pass_at_ms) as f64 / 1000.0),
                last_pass_ms: stats.last_pass_micros as f64 / 1000.0,
                hooks_running: stats.hooks_running,
            },
            pools_by_state: by_state.into_iter().collect(),
            users: users::Entity::find()
                .count(db)
                .await
                .map_err(internal("users"))? as i64,
            teams: teams::Entity::find()
                .count(db)
                .await
                .map_err(internal("teams"))? as i64,
            audit: events
                .into_iter()
                .take(AUDIT_PAGE as usize)
                .map(|e| AuditView {
                    id: e.id,
                    at: e.created_at.to_rfc3339(),
                    actor: e.actor,
                    action: e.action,
                    object: format!("{} {}", e.object_type, e.object_id),
                    details: e.details,
                })
                .collect(),
            older,
            pools: pool_briefs(
                db,
                pools::Entity::find()
                    .order_by_asc(pools::Column::Name)
                    .all(db)
                    .await
                    .map_err(internal("pools"))?,
            )
            .await?,
            pending_requests: crate::entities::pool_requests::Entity::find()
                .filter(crate::entities::pool_requests::Column::State.eq("submitted"))
                .count(db)
                .await
                .map_err(internal("requests"))? as i64,
            notice: flash.as_ref().and_then(|f| f.notice.clone()),
            errors: flash.map(|f| f.state.errors).unwrap_or_default(),
            csrf_token: request_form_token(&session).await?,
        })
    }
}
