//! The live streams of the pages (server-sent events): `/events/status`,
//! `/events/pools/{name}` and `/events/teams/{name}`. Each message is a JSON object holding
//! only the sections of the page that changed (see [`crate::live`]); the hydrated page merges
//! it into what it shows. A stream is authorized once, when it opens, like the page itself:
//! a pool's private parts go only to its team and admins, a team's page only to its members.

use std::convert::Infallible;
use std::time::Duration;

use app::api::charts::ChartRange;
use app::error::AppError;
use app::format::shown_duration;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Deserialize;

use super::pools::{Viewed, pool_update, viewed};
use crate::accounts;
use crate::auth::current::{MaybeUser, require, require_member};
use crate::entities::pools;
use crate::live::{Computed, Reader, Sections, Topic};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/status", get(status_events))
        .route("/events/pools/{name}", get(pool_events))
        .route("/events/teams/{name}", get(team_events))
}

#[derive(Debug, Deserialize)]
struct RangeQuery {
    #[serde(default)]
    range: String,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Logs a failed computation; the stream keeps the last good sections and tries again.
fn logged<T>(what: &'static str, result: Result<T, impl std::fmt::Display>) -> Result<T, Computed> {
    result.map_err(|e| {
        tracing::warn!(error = %e, what, "live page: cannot compute");
        Computed::Failed
    })
}

/// The `charts` section, unless they could not be made (then the page keeps the last ones).
fn charts(
    made: Result<Vec<app::api::charts::Chart>, impl std::fmt::Display>,
) -> Option<(&'static str, String)> {
    logged("charts", made).ok().map(|c| ("charts", json(&c)))
}

/// How long one stream serves before it ends and the browser reconnects, so that whoever
/// follows a page is authorized again (a sign-out, a lost membership, a pool handed to another
/// team take effect within this time).
const READ_FOR: Duration = Duration::from_secs(300);

/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_millis(500);

fn refused(error: AppError) -> Response {
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{error}\n")).into_response()
}

/// The stream of one reader, as server-sent events, for [`READ_FOR`].
fn stream(reader: Reader) -> Response {
    use futures_util::StreamExt;
    let events = futures_util::stream::unfold(reader, |mut reader| async move {
        let (seq, body) = reader.next().await?;
        Some((
            Ok::<_, Infallible>(Event::default().id(seq.to_string()).retry(RETRY).data(body)),
            reader,
        ))
    })
    .take_until(tokio::time::sleep(READ_FOR));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    // A reverse proxy must pass each event on at once (nginx buffers otherwise).
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Ages cut to what the page shows ([`shown_duration`]): a section changes when what it shows
/// does, not every second.
fn steady_tickets(tickets: &mut [app::api::tickets::TicketDetail]) {
    for t in tickets {
        t.age = shown_duration(t.age);
    }
}

async fn status_events(State(state): State<AppState>, Query(q): Query<RangeQuery>) -> Response {
    let range = ChartRange::parse(&q.range);
    let changes = state.engine.changes();
    let live = state.live.clone();
    let reader = live.follow(
        Topic::Status {
            range: range.as_str(),
        },
        changes,
        move |slow| {
            let state = state.clone();
            async move {
                let Ok(mut snapshot) = logged(
                    "status",
                    crate::status::snapshot(&state.db, &state.waiting).await,
                ) else {
                    return Computed::Failed;
                };
                for group in &mut snapshot.queue {
                    group.oldest_age_secs = shown_duration(group.oldest_age_secs);
                }
                let mut sections: Sections = vec![
                    ("pools", json(&snapshot.pools)),
                    ("queue", json(&snapshot.queue)),
                ];
                if slow {
                    sections.extend(charts(super::charts::pool_charts(&state, "", range).await));
                }
                Computed::Sections(sections)
            }
        },
    );
    stream(reader)
}

async fn pool_events(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let range = ChartRange::parse(&q.range);
    let (private, owner) = match viewed(&state, &name, user.as_ref()).await {
        Ok(Viewed { private, pool, .. }) => (private, pool.owner_team_id),
        Err(e) => return refused(e),
    };
    let changes = state.engine.changes();
    let topic = Topic::Pool {
        name: name.clone(),
        owner,
        private,
        range: range.as_str(),
    };
    let reader = state.live.clone().follow(topic, changes, move |slow| {
        let (state, name) = (state.clone(), name.clone());
        async move {
            // Found again each time: it may have been removed or given to another team.
            let pool = match logged(
                "pool",
                pools::Entity::find_by_id(name.clone()).one(&state.db).await,
            ) {
                Ok(Some(pool)) if pool.owner_team_id == owner => pool,
                Ok(_) => return Computed::Gone,
                Err(failed) => return failed,
            };
            let Ok(mut update) = logged("pool", pool_update(&state, pool, private).await) else {
                return Computed::Failed;
            };
            let mut machines = update.machines.take().unwrap_or_default();
            let mut logs = std::collections::BTreeMap::new();
            for m in &mut machines {
                m.age_secs = shown_duration(m.age_secs);
                if private {
                    logs.insert(m.id, std::mem::take(&mut m.logs));
                }
            }
            let mut waiting = update.waiting.take().unwrap_or_default();
            steady_tickets(&mut waiting);
            let mut sections: Sections = vec![
                ("status", json(&update.status)),
                ("machines", json(&machines)),
                ("waiting", json(&waiting)),
            ];
            if private {
                // Apart from the machines: a log that grows resends only the logs.
                sections.push(("logs", json(&logs)));
            }
            if slow {
                sections.extend(charts(
                    super::charts::pool_charts(&state, &name, range).await,
                ));
            }
            Computed::Sections(sections)
        }
    });
    stream(reader)
}

async fn team_events(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(name): Path<String>,
) -> Response {
    let allowed = require(user).and_then(|u| require_member(&u, &name));
    if let Err(e) = allowed {
        return refused(e);
    }
    let team = match accounts::team(&state.db, &name).await {
        Ok(Some(t)) => t,
        Ok(None) => return refused(AppError::NotFound(format!("team {name}"))),
        Err(e) => {
            tracing::error!(error = %e, "live team page: database error");
            return refused(AppError::Internal);
        }
    };
    let changes = state.engine.changes();
    let topic = Topic::Team { name: name.clone() };
    let reader = state.live.clone().follow(topic, changes, move |slow| {
        let state = state.clone();
        async move {
            let Ok(owned) = logged(
                "team pools",
                pools::Entity::find()
                    .filter(pools::Column::OwnerTeamId.eq(team.id))
                    .order_by_asc(pools::Column::Name)
                    .all(&state.db)
                    .await,
            ) else {
                return Computed::Failed;
            };
            let Ok(briefs) = logged(
                "team pools",
                super::backend::pool_briefs(&state.db, owned).await,
            ) else {
                return Computed::Failed;
            };
            let mut sections: Sections = vec![("pools", json(&briefs))];
            if slow {
                let now = chrono::Utc::now().timestamp_millis();
                sections.extend(charts(
                    crate::charts::team_charts(&state.db, team.id, now).await,
                ));
            }
            Computed::Sections(sections)
        }
    });
    stream(reader)
}
