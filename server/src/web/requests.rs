//! The request pages' server side: the [`RequestsBackend`] port, and the form posts that
//! submit, preview, withdraw, approve and reject requests, keep the price list, and pause,
//! resume, drain, retire or edit pools. Authorization is [`crate::auth::current`]'s: a
//! team's members act on its requests and pause or resume its pools; admins do everything.

use std::collections::BTreeMap;

use app::api::credentials::FormState;
use app::api::requests::*;
use app::error::AppError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tower_sessions::Session;

use super::backend::{request_form_token, request_session, request_user};
use super::forms::{Flash, flash_and_redirect, poster, query, respond, take_flash};
use crate::audit::Actor;
use crate::auth::current::{MaybeUser, require, require_admin, require_member};
use crate::engine::model::PoolState;
use crate::entities::{credentials, pools};
use crate::requests::{self, RequestError};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/teams/{team}/requests", post(submit))
        .route("/requests/{id}/withdraw", post(withdraw))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/reject", post(reject))
        .route("/admin/prices", post(set_price))
        .route("/admin/prices/{id}/delete", post(delete_price))
        .route("/pools/{pool}/state", post(set_pool_state))
        .route("/pools/{pool}/limits", post(edit_pool))
}

/// The port's implementation, for the pages' server functions.
pub struct ServerRequests {
    pub state: AppState,
}

impl ServerRequests {
    async fn user(&self) -> Result<crate::accounts::CurrentUser, AppError> {
        require(request_user(&self.state).await?)
    }
}

fn db_error(e: sea_orm::DbErr) -> AppError {
    AppError::from(RequestError::Db(e))
}

/// The form's starting values: the defaults of a new request, or a pool's budget to change.
fn defaults(
    team: &str,
    change: Option<(&requests::RequestSpec, &pools::Model)>,
    params: &[app::api::credentials::FieldSpec],
) -> FormValues {
    let mut v: FormValues = params
        .iter()
        .filter(|f| !f.default.is_empty())
        .map(|f| (f.name.clone(), f.default.clone()))
        .collect();
    let set = |v: &mut FormValues, k: &str, value: String| {
        v.insert(k.to_string(), value);
    };
    match change {
        None => {
            set(&mut v, "pool_kind", "dedicated".into());
            set(&mut v, "budget", "on_demand".into());
            set(&mut v, "max", "4".into());
            set(&mut v, "prealloc", "1".into());
            set(&mut v, "build_hours", "100".into());
            set(&mut v, "arch_x86_64", "on".into());
            set(&mut v, "scope", format!("@{team}/.*"));
        }
        Some((spec, pool)) => {
            // What the pool runs with now (an admin may have changed it since the request);
            // the request's expected hours, spread over its pools like its cap was.
            let share = spec.arches.len().max(1) as f64;
            set(&mut v, "budget", requests::current_choice(pool).into());
            set(&mut v, "max", pool.max.to_string());
            set(&mut v, "prealloc", pool.max_prealloc.max(1).to_string());
            set(
                &mut v,
                "build_hours",
                (spec.budget.build_hours / share).round().to_string(),
            );
            let price = pool.price_per_hour.unwrap_or(spec.budget.price_per_hour);
            set(&mut v, "price_per_hour", price.to_string());
            if let Some(cap) = pool.monthly_cap {
                set(&mut v, "monthly_cap", cap.to_string());
            }
        }
    }
    v
}

#[async_trait::async_trait]
impl RequestsBackend for ServerRequests {
    async fn form(
        &self,
        team: String,
        credential: Option<i32>,
        change: Option<String>,
    ) -> Result<RequestFormPage, AppError> {
        let user = self.user().await?;
        require_member(&user, &team)?;
        let db = &self.state.db;
        let session = request_session().await?;
        let team_row = crate::accounts::team(db, &team)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::NotFound(format!("team {team}")))?;
        let creds = credentials::Entity::find()
            .filter(credentials::Column::TeamId.eq(team_row.id))
            .filter(credentials::Column::RevokedAt.is_null())
            .all(db)
            .await
            .map_err(db_error)?;
        let choices: Vec<CredentialChoice> = creds
            .iter()
            .map(|c| CredentialChoice {
                id: c.id,
                name: c.name.clone(),
                kind: c.kind.clone(),
                region: requests::region_of(c),
            })
            .collect();
        let flash = take_flash(&session, |f| f.starts_with("request:")).await;
        let preview = flash.as_ref().is_some_and(|f| f.form == "request:preview");
        // A pool to change: its request's spec and credential.
        let mut change_spec = None;
        let mut chosen_id = credential;
        if let Some(pool) = &change {
            let p = pools::Entity::find_by_id(pool.clone())
                .filter(pools::Column::OwnerTeamId.eq(team_row.id))
                .one(db)
                .await
                .map_err(db_error)?
                .ok_or_else(|| AppError::NotFound(format!("pool {pool} of team {team}")))?;
            let original = match p.request_id {
                Some(id) => crate::entities::pool_requests::Entity::find_by_id(id)
                    .one(db)
                    .await
                    .map_err(db_error)?,
                None => None,
            }
            .ok_or_else(|| {
                AppError::Conflict(format!(
                    "pool {pool} was not made from a request: ask an admin to change it"
                ))
            })?;
            chosen_id = original.credential_id;
            change_spec = serde_json::from_str::<requests::RequestSpec>(&original.spec)
                .ok()
                .map(|spec| (spec, p));
        }
        let chosen = chosen_id.and_then(|id| choices.iter().find(|c| c.id == id).cloned());
        let kind = chosen.as_ref().map_or("", |c| c.kind.as_str());
        let all_arches: Vec<String> = ARCHES.iter().map(|a| a.to_string()).collect();
        let params = if change.is_some() {
            Vec::new()
        } else {
            param_specs(kind, &all_arches)
        };
        let prices: Vec<PriceEntry> = match &chosen {
            Some(c) => crate::prices::list(db)
                .await
                .map_err(db_error)?
                .into_iter()
                .filter(|p| p.kind == c.kind && p.region == c.region)
                .collect(),
            None => Vec::new(),
        };
        let (values, errors) = match flash {
            Some(f) => (f.state.values, f.state.errors),
            None => {
                let mut v = defaults(&team, change_spec.as_ref().map(|(s, p)| (s, p)), &params);
                if let Some(c) = &chosen {
                    v.insert("credential".into(), c.id.to_string());
                }
                (v, Vec::new())
            }
        };
        Ok(RequestFormPage {
            csrf_token: request_form_token(&session).await?,
            team,
            credentials: choices,
            credential: chosen,
            change,
            params,
            values,
            errors,
            prices,
            preview,
        })
    }

    async fn request(&self, id: i32) -> Result<RequestPage, AppError> {
        let user = self.user().await?;
        let db = &self.state.db;
        let (row, team) = requests::find(db, id).await?;
        require_member(&user, &team)?;
        let view = requests::view(db, &self.state.config, row, user.admin)
            .await
            .map_err(db_error)?;
        let session = request_session().await?;
        let prefix = format!("request-{id}:");
        let flash = take_flash(&session, |f| f.starts_with(&prefix)).await;
        let submitted = view.state == "submitted";
        let mut limits = requests::limits_for_page(&view, &self.state.config);
        let (mut errors, mut notice) = (Vec::new(), None);
        if let Some(f) = flash {
            if f.form.ends_with(":approve") {
                limits.extend(f.state.values.clone());
            }
            errors = f.state.errors;
            notice = f.notice;
        }
        Ok(RequestPage {
            csrf_token: request_form_token(&session).await?,
            can_withdraw: submitted && user.is_member(&team),
            can_decide: submitted && user.admin,
            request: view,
            limits,
            errors,
            notice,
        })
    }

    async fn team_requests(&self, team: String) -> Result<Vec<RequestView>, AppError> {
        let user = self.user().await?;
        require_member(&user, &team)?;
        Ok(requests::for_team(&self.state.db, &self.state.config, &team).await?)
    }

    async fn queue(&self) -> Result<RequestQueue, AppError> {
        let user = self.user().await?;
        require_admin(&user)?;
        Ok(requests::queue(&self.state.db, &self.state.config).await?)
    }

    async fn prices(&self) -> Result<PriceListPage, AppError> {
        let user = self.user().await?;
        require_admin(&user)?;
        let session = request_session().await?;
        let flash = take_flash(&session, |f| f == "prices").await;
        let (values, errors, notice) = match flash {
            Some(f) => (f.state.values, f.state.errors, f.notice),
            None => (FormValues::new(), Vec::new(), None),
        };
        Ok(PriceListPage {
            entries: crate::prices::list(&self.state.db)
                .await
                .map_err(db_error)?,
            csrf_token: request_form_token(&session).await?,
            values,
            errors,
            notice,
        })
    }
}

/// Submits (or, with `action=preview`, only previews) a request of `team`.
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(team): Path<String>,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let change = form.get("change").cloned().filter(|c| !c.is_empty());
    let back = format!(
        "/teams/{team}/requests/new{}",
        match &change {
            Some(pool) => query(&[("change", pool)]),
            None => query(&[(
                "credential",
                form.get("credential").map_or("", |c| c.as_str())
            )]),
        }
    );
    let token = form.remove("csrf_token");
    let user = match poster(user, &session, &headers, token.as_deref(), &back, |u| {
        require_member(u, &team)
    })
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let prices = match crate::prices::list(&state.db).await {
        Ok(p) => p,
        Err(e) => {
            return respond(
                &session,
                String::new(),
                Err(db_error(e)),
                FormState::default(),
                &back,
            )
            .await;
        }
    };
    let action = form.remove("action").unwrap_or_default();
    if action == "preview" {
        // Without JavaScript the estimate is the server's: show it for what was typed, with
        // the list price filled in where none was typed.
        if form
            .get("price_per_hour")
            .is_none_or(|p| p.trim().is_empty())
            && let Ok(Some(team_row)) = crate::accounts::team(&state.db, &team).await
            && let Ok(Some(c)) = credentials::Entity::find_by_id(
                form.get("credential")
                    .and_then(|c| c.parse::<i32>().ok())
                    .unwrap_or(0),
            )
            .filter(credentials::Column::TeamId.eq(team_row.id))
            .one(&state.db)
            .await
            && let Some(price) = list_price(
                &prices,
                &c.kind,
                &requests::region_of(&c),
                form.get("instance_type")
                    .or(form.get("flavor"))
                    .map_or("", |s| s.as_str()),
            )
        {
            form.insert("price_per_hour".into(), price.to_string());
        }
        let flash = Flash {
            form: "request:preview".into(),
            state: FormState::keeping(form),
            notice: None,
        };
        return flash_and_redirect(&session, flash, &back).await;
    }
    let actor = Actor::User(user.username.clone());
    let result = match requests::check(&state.db, &team, &form, &prices).await {
        Ok(draft) => requests::submit(&state.db, &actor, draft).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(id) => {
            let flash = Flash {
                form: format!("request-{id}:submitted"),
                notice: Some("Submitted. An admin reviews it; its steps appear below.".into()),
                ..Flash::default()
            };
            flash_and_redirect(&session, flash, &format!("/requests/{id}")).await
        }
        Err(e) => {
            let kept = FormState::keeping(form);
            respond(&session, "request:new".into(), Err(e.into()), kept, &back).await
        }
    }
}

/// Who posts on request `id`, allowed by `authorize` given the request's team.
async fn request_poster(
    state: &AppState,
    user: Option<crate::accounts::CurrentUser>,
    session: &Session,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
    id: i32,
    authorize: impl FnOnce(&crate::accounts::CurrentUser, &str) -> Result<(), AppError>,
) -> Result<(Actor, String), Response> {
    let back = format!("/requests/{id}");
    let team = match requests::find(&state.db, id).await {
        Ok((_, team)) => team,
        Err(e) => {
            return Err(crate::auth::current::ApiError(AppError::from(e)).into_response());
        }
    };
    let token = form.get("csrf_token").map(String::as_str);
    let user = poster(user, session, headers, token, &back, |u| {
        authorize(u, &team)
    })
    .await?;
    Ok((Actor::User(user.username), back))
}

async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    // Only the team's members withdraw; an admin rejects instead.
    let (actor, back) =
        match request_poster(&state, user, &session, &headers, &form, id, |u, team| {
            if u.is_member(team) {
                Ok(())
            } else {
                Err(AppError::Forbidden)
            }
        })
        .await
        {
            Ok(a) => a,
            Err(answer) => return answer,
        };
    let result = requests::withdraw(&state.db, &actor, id)
        .await
        .map(|()| "Withdrawn.".to_string())
        .map_err(AppError::from);
    respond(
        &session,
        format!("request-{id}:withdraw"),
        result,
        FormState::default(),
        &back,
    )
    .await
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let (actor, back) = match request_poster(&state, user, &session, &headers, &form, id, |u, _| {
        require_admin(u)
    })
    .await
    {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = requests::approve(&state.db, &state.config, &actor, id, &form)
        .await
        .map(|pools| {
            state.engine.wake();
            state.routing.invalidate();
            format!(
                "Approved: {} created; the engine starts their machines now.",
                pools.join(", ")
            )
        })
        .map_err(AppError::from);
    let kept = FormState::keeping(form);
    respond(
        &session,
        format!("request-{id}:approve"),
        result,
        kept,
        &back,
    )
    .await
}

async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let (actor, back) = match request_poster(&state, user, &session, &headers, &form, id, |u, _| {
        require_admin(u)
    })
    .await
    {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let result = requests::reject(&state.db, &actor, id, &reason)
        .await
        .map(|()| "Rejected; the team sees the reason here.".to_string())
        .map_err(AppError::from);
    let kept = FormState::keeping(BTreeMap::from([("reason".to_string(), reason)]));
    respond(
        &session,
        format!("request-{id}:reject"),
        result,
        kept,
        &back,
    )
    .await
}

async fn set_price(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = "/admin/prices";
    let token = form.remove("csrf_token");
    let user = match poster(
        user,
        &session,
        &headers,
        token.as_deref(),
        back,
        require_admin,
    )
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let result = match crate::prices::set(&state.db, &Actor::User(user.username), &form).await {
        Ok(()) => Ok(format!(
            "Saved: {} {} {}.",
            form.get("kind").map_or("", |s| s.as_str()),
            form.get("region").map_or("", |s| s.as_str()),
            form.get("instance_type").map_or("", |s| s.as_str())
        )),
        Err(Ok(errors)) => Err(AppError::Invalid(errors)),
        Err(Err(e)) => Err(db_error(e)),
    };
    let kept = FormState::keeping(form);
    respond(&session, "prices".into(), result, kept, back).await
}

async fn delete_price(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = "/admin/prices";
    let user = match poster(
        user,
        &session,
        &headers,
        form.get("csrf_token").map(String::as_str),
        back,
        require_admin,
    )
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let result = match crate::prices::delete(&state.db, &Actor::User(user.username), id).await {
        Ok(true) => Ok("Removed.".to_string()),
        Ok(false) => Err(AppError::NotFound(format!("price list entry {id}"))),
        Err(e) => Err(db_error(e)),
    };
    respond(
        &session,
        "prices".into(),
        result,
        FormState::default(),
        back,
    )
    .await
}

/// Pauses, resumes, drains or retires a pool. A team's members may pause and resume its
/// pools; draining and retiring are for admins.
async fn set_pool_state(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(pool): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = crate::auth::safe_next(form.get("back").map(String::as_str));
    let (owner, current) = match pools::Entity::find_by_id(pool.clone()).one(&state.db).await {
        Ok(Some(p)) => (
            match p.owner_team_id {
                Some(t) => crate::entities::teams::Entity::find_by_id(t)
                    .one(&state.db)
                    .await
                    .ok()
                    .flatten()
                    .map(|t| t.name),
                None => None,
            },
            PoolState::parse(&p.state),
        ),
        Ok(None) => {
            return respond(
                &session,
                "pool".into(),
                Err(AppError::NotFound(format!("pool {pool}"))),
                FormState::default(),
                &back,
            )
            .await;
        }
        Err(e) => {
            return respond(
                &session,
                "pool".into(),
                Err(db_error(e)),
                FormState::default(),
                &back,
            )
            .await;
        }
    };
    let wanted = form.get("state").and_then(|s| PoolState::parse(s));
    let user = match poster(
        user,
        &session,
        &headers,
        form.get("csrf_token").map(String::as_str),
        &back,
        // Members pause an active pool and resume a paused one; a pool an admin drained
        // or retired stays so until an admin says otherwise.
        |u| match (current, wanted) {
            (Some(PoolState::Active), Some(PoolState::Paused))
            | (Some(PoolState::Paused), Some(PoolState::Active))
                if owner.as_deref().is_some_and(|t| u.is_member(t)) =>
            {
                Ok(())
            }
            _ => require_admin(u),
        },
    )
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let Some(wanted) = wanted else {
        return respond(
            &session,
            "pool".into(),
            Err(AppError::invalid(
                "state",
                "choose active, paused, draining or retired",
            )),
            FormState::default(),
            &back,
        )
        .await;
    };
    let reason = match wanted {
        PoolState::Active => None,
        other => Some(format!("{} by {}", other.as_str(), user.username)),
    };
    let result = crate::pools::set_state(
        &state.db,
        &Actor::User(user.username.clone()),
        &pool,
        wanted,
        reason,
    )
    .await
    .map(|()| {
        state.engine.wake();
        state.routing.invalidate();
        format!("Pool {pool} is {} now.", wanted.as_str())
    })
    .map_err(|e| AppError::from(RequestError::from(e)));
    // Rules whose builds now have nowhere to go: said where the change was made.
    let result = match result {
        Ok(notice) if wanted != PoolState::Active => {
            match crate::routing::stranded(&state.db).await {
                Ok(stranded) if !stranded.is_empty() => {
                    Ok(format!("{notice} {}", stranded.join(" ")))
                }
                _ => Ok(notice),
            }
        }
        other => other,
    };
    respond(&session, "pool".into(), result, FormState::default(), &back).await
}

/// An admin edits a pool's limits and budget.
async fn edit_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(pool): Path<String>,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = "/admin".to_string();
    let token = form.remove("csrf_token");
    let user = match poster(
        user,
        &session,
        &headers,
        token.as_deref(),
        &back,
        require_admin,
    )
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let result = crate::pools::edit_limits(&state.db, &Actor::User(user.username), &pool, &form)
        .await
        .map(|()| {
            state.engine.wake();
            format!("Pool {pool} saved.")
        })
        .map_err(|e| AppError::from(RequestError::from(e)));
    let kept = FormState::keeping(form);
    respond(&session, format!("pool-{pool}:limits"), result, kept, &back).await
}
