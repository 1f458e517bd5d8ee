//! `GET /api/v1/tickets/{id}`: one ticket with why it waits; `GET /api/v1/tickets?q=`: the
//! waiting tickets whose sandbox (Copr's `owner/project--submitter`) contains the text, or
//! the ticket with that id. Public like the status page, which shows the same queue; served
//! outside the session layer, from the once-a-second explanation ([`crate::waiting`]).

use app::api::tickets::{TicketDetail, TicketSearch};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ApiErrorBody;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(one))
}

fn error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_REQUEST => "invalid",
        _ => "unavailable",
    };
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

fn unavailable(e: sea_orm::DbErr) -> Response {
    tracing::error!(error = %e, "ticket API: the database did not answer");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database did not answer; try again",
    )
}

/// One ticket: its state, tags, sandbox, age, machine, and why it waits.
#[utoipa::path(
    get,
    path = "/api/v1/tickets/{id}",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket id takeTicket returned")),
    responses(
        (status = 200, description = "The ticket", body = TicketDetail),
        (status = 400, description = "Not a ticket id", body = ApiErrorBody),
        (status = 404, description = "No such ticket", body = ApiErrorBody),
        (status = 503, description = "The database did not answer", body = ApiErrorBody),
    )
)]
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim_start_matches('#').parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "a ticket id is a whole number, as takeTicket returned it",
        );
    };
    match crate::waiting::ticket(&state.db, &state.waiting, id).await {
        Ok(Some(t)) => axum::Json(t).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("there is no ticket {id}")),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// A Copr owner, project, `owner/project`, submitter, or a ticket id.
    #[serde(default)]
    q: String,
}

/// Waiting tickets whose sandbox (`owner/project--submitter`) contains `q`, or the ticket
/// with that id, in queue order, each with why it waits.
#[utoipa::path(
    get,
    path = "/api/v1/tickets",
    tag = "tickets",
    params(SearchQuery),
    responses(
        (status = 200, description = "The matching waiting tickets (at most 100)", body = TicketSearch),
        (status = 400, description = "`q` is empty or too long", body = ApiErrorBody),
        (status = 503, description = "The database did not answer", body = ApiErrorBody),
    )
)]
async fn search(State(state): State<AppState>, Query(q): Query<SearchQuery>) -> Response {
    if q.q.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "give q: a Copr owner, project, owner/project, submitter or ticket id",
        );
    }
    if q.q.len() > 200 {
        return error(StatusCode::BAD_REQUEST, "q is at most 200 characters");
    }
    match crate::waiting::search(&state.db, &state.waiting, &q.q).await {
        Ok(found) => axum::Json(found).into_response(),
        Err(e) => unavailable(e),
    }
}
