//! The pool pages' server side: the [`PoolsBackend`] port (`/pools/{name}`: configuration,
//! state, machines, waiting builds, start statistics; machines' data and hook logs for the
//! owning team's members and admins) and the admin's form post that deletes a machine.
//! Pausing, draining and retiring post to `/pools/{name}/state` (`requests.rs`).

use std::collections::BTreeMap;

use app::api::credentials::FormState;
use app::api::pools::{HookLog, MachineView, PoolPage, PoolUpdate, PoolsBackend};
use app::error::AppError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Form, Router};
use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tower_sessions::Session;

use super::backend::{request_form_token, request_session, request_user};
use super::forms::{poster, respond, take_flash};
use crate::accounts::CurrentUser;
use crate::audit::Actor;
use crate::auth::current::{MaybeUser, require_admin};
use crate::engine::store::{counts_of, live_resources};
use crate::entities::{pools, resources, teams};
use crate::resources::{Selection, log_files, request_delete};
use crate::state::AppState;

/// The most of a hook log the page shows: its end.
const LOG_TAIL_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/pools/{pool}/machines/{id}/delete", post(delete_machine))
}

/// The port's implementation, for the pages' server functions.
pub struct ServerPools {
    pub state: AppState,
}

fn internal(context: &'static str) -> impl FnOnce(sea_orm::DbErr) -> AppError {
    move |e| {
        tracing::error!(error = %e, context, "pool page: database error");
        AppError::Internal
    }
}

/// The end of a hook log, as text, read without loading the whole file.
fn tail(path: &std::path::Path) -> (String, bool) {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<(String, bool)> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let keep = LOG_TAIL_BYTES as u64;
        let truncated = len > keep;
        file.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
        let mut bytes = Vec::with_capacity(len.min(keep) as usize);
        file.take(keep).read_to_end(&mut bytes)?;
        Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
    };
    read().unwrap_or_else(|e| (format!("(cannot read this log: {e})"), false))
}

/// The hook logs of these machines, read off the async threads.
async fn hook_logs(log_dir: std::path::PathBuf, ids: Vec<i32>) -> BTreeMap<i32, Vec<HookLog>> {
    tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .map(|id| {
                let logs = log_files(&log_dir, id)
                    .into_iter()
                    .map(|(kind, path)| {
                        let (text, truncated) = tail(&path);
                        HookLog {
                            kind: kind.as_str().to_string(),
                            text,
                            truncated,
                        }
                    })
                    .collect();
                (id, logs)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Who looks at a pool: the pool, its owning team, and whether the viewer sees its private
/// parts (machines' data, hook logs, commands) and may act as an admin.
pub(super) struct Viewed {
    pub pool: pools::Model,
    pub owner_team: Option<String>,
    pub private: bool,
    pub admin: bool,
}

/// Finds pool `name` and what `user` may see of it.
pub(super) async fn viewed(
    state: &AppState,
    name: &str,
    user: Option<&CurrentUser>,
) -> Result<Viewed, AppError> {
    let db = &state.db;
    let Some(pool) = pools::Entity::find_by_id(name.to_string())
        .one(db)
        .await
        .map_err(internal("pool"))?
    else {
        return Err(AppError::NotFound(format!("pool {name}")));
    };
    let owner_team = match pool.owner_team_id {
        Some(id) => teams::Entity::find_by_id(id)
            .one(db)
            .await
            .map_err(internal("team"))?
            .map(|t| t.name),
        None => None,
    };
    let admin = user.is_some_and(|u| u.admin);
    let member = user
        .zip(owner_team.as_deref())
        .is_some_and(|(u, t)| u.is_member(t));
    Ok(Viewed {
        pool,
        owner_team,
        private: admin || member,
        admin,
    })
}

/// The pool as `pools.yaml` holds it, commands hidden unless `private`.
async fn config_yaml(
    state: &AppState,
    pool: &pools::Model,
    private: bool,
) -> Result<String, AppError> {
    Ok(match crate::engine::pools::from_model(pool) {
        Ok(mut config) => {
            // Commands name hosts, images and accounts: the team's and admins' business.
            if !private {
                let hidden = "(shown to the owning team and admins)".to_string();
                config.cmd_new = hidden.clone();
                config.cmd_delete = hidden.clone();
                for cmd in [
                    &mut config.cmd_livecheck,
                    &mut config.cmd_release,
                    &mut config.cmd_list,
                ] {
                    if cmd.is_some() {
                        *cmd = Some(hidden.clone());
                    }
                }
            }
            let names = crate::credentials::Vault::qualified_names(&state.db)
                .await
                .map_err(internal("credentials"))?;
            crate::engine::pools::export_pools_yaml(&[config], &names)
        }
        Err(errors) => format!(
            "# the stored definition is broken: {}\n",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// What changes on a pool's page: its line, machines and the waiting builds it could serve.
pub(super) async fn pool_update(
    state: &AppState,
    pool: pools::Model,
    private: bool,
) -> Result<PoolUpdate, AppError> {
    let db = &state.db;
    let name = pool.name.clone();
    let rows = resources::Entity::find()
        .filter(live_resources())
        .filter(resources::Column::Pool.eq(name.clone()))
        .order_by_asc(resources::Column::Id)
        .all(db)
        .await
        .map_err(internal("machines"))?;
    let month = crate::usage::this_month(db)
        .await
        .map_err(internal("usage"))?;
    let cost = month.get(&name).map_or(0.0, |m| m.cost);
    // Counted from this pool's machines, read once for the table below too.
    let c = counts_of(&rows).remove(&name).unwrap_or_default();
    let state_reason = pool.state_reason.clone();
    let status = crate::status::pool_status(pool, &c, cost);

    let now = Utc::now();
    let log_dir = state.engine.settings().log_dir().to_path_buf();
    let mut logs = if private {
        hook_logs(log_dir, rows.iter().map(|m| m.id).collect()).await
    } else {
        BTreeMap::new()
    };
    let machines = rows
        .into_iter()
        .map(|m| MachineView {
            id: i64::from(m.id),
            name: m.name.clone().unwrap_or_default(),
            state: m.state.clone(),
            ticket: m.ticket_id.map(i64::from),
            sandbox: m.sandbox.clone(),
            age_secs: (now - m.created_at).num_milliseconds().max(0) as f64 / 1000.0,
            releases: i64::from(m.releases_counter),
            livecheck_failures: i64::from(m.check_failed_count),
            data: private
                .then(|| {
                    m.data
                        .as_deref()
                        .map(|d| String::from_utf8_lossy(d).trim().to_string())
                })
                .flatten(),
            logs: logs.remove(&m.id).unwrap_or_default(),
        })
        .collect();

    // The waiting builds this pool is the reason for, or could serve.
    let explained = state.waiting.get(db).await.map_err(internal("waiting"))?;
    let serves = explained.world.pools.get(&name).map(|p| p.config.clone());
    let waiting = crate::engine::core::waiting_order(&explained.world)
        .into_iter()
        .filter(|id| {
            let about_us = explained
                .reasons
                .get(id)
                .is_some_and(|w| w.pool.as_deref() == Some(name.as_str()));
            let could = explained
                .world
                .tickets
                .get(id)
                .zip(serves.as_ref())
                .is_some_and(|(t, p)| p.serves(&t.tags).is_some());
            about_us || could
        })
        .filter_map(|id| explained.detail(id, now))
        .take(200)
        .collect();
    Ok(PoolUpdate {
        status: Some((status, state_reason)),
        machines: Some(machines),
        waiting: Some(waiting),
        charts: None,
        logs: None,
    })
}

#[async_trait::async_trait]
impl PoolsBackend for ServerPools {
    async fn pool_page(&self, name: String) -> Result<PoolPage, AppError> {
        let user = request_user(&self.state).await?;
        let Viewed {
            pool,
            owner_team,
            private,
            admin,
        } = viewed(&self.state, &name, user.as_ref()).await?;
        let config_yaml = config_yaml(&self.state, &pool, private).await?;
        let update = pool_update(&self.state, pool, private).await?;
        let (status, state_reason) = update.status.ok_or(AppError::Internal)?;
        let session = request_session().await?;
        let flash = take_flash(&session, |f| f == "pool").await;
        Ok(PoolPage {
            status,
            owner_team,
            state_reason,
            config_yaml,
            machines: update.machines.unwrap_or_default(),
            waiting: update.waiting.unwrap_or_default(),
            private,
            may_pause: private,
            admin,
            csrf_token: request_form_token(&session).await?,
            notice: flash.as_ref().and_then(|f| f.notice.clone()),
            errors: flash.map(|f| f.state.errors).unwrap_or_default(),
        })
    }
}

/// An admin deletes one machine of the pool (its ticket, if any, FAILS; the engine cancels a
/// running hook and runs `cmd_delete`). Audited by [`request_delete`].
async fn delete_machine(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path((pool, id)): Path<(String, i32)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = format!("/pools/{pool}");
    let user = match poster(
        user,
        &session,
        &headers,
        form.get("csrf_token").map(String::as_str),
        &back,
        require_admin,
    )
    .await
    {
        Ok(u) => u,
        Err(answer) => return answer,
    };
    let belongs = resources::Entity::find_by_id(id)
        .one(&state.db)
        .await
        .map(|m| m.is_some_and(|m| m.pool == pool));
    let result = match belongs {
        Ok(false) => Err(AppError::NotFound(format!("machine {id} in pool {pool}"))),
        Err(e) => Err(internal("machine")(e)),
        Ok(true) => request_delete(
            &state.db,
            &Selection::Ids(vec![id]),
            &Actor::User(user.username.clone()),
        )
        .await
        .map_err(internal("delete"))
        .map(|outcomes| {
            state.engine.wake();
            outcomes
                .into_iter()
                .map(|o| {
                    format!(
                        "Machine {} ({}): {}.",
                        o.id,
                        o.name.unwrap_or_default(),
                        o.result
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        }),
    };
    respond(&session, "pool".into(), result, FormState::default(), &back).await
}
