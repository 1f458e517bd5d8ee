//! `GET /api/v1/tickets/{id}`: one ticket with why it waits; `GET /api/v1/tickets?q=`: the
//! waiting tickets whose sandbox (Copr's `owner/project--submitter`) contains the text, or
//! the ticket with that id. Public like the status page, which shows the same queue; served
//! outside the session layer, from the once-a-second explanation ([`crate::waiting`]).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tickets", get(search))
        .route("/api/v1/tickets/{id}", get(one))
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

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

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
