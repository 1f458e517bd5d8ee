//! The current user, in one place: an axum extractor for handlers and a function for server
//! functions. Sessions older than `session_max_age_secs` are ended here, whatever their
//! activity, so group changes in FAS reach every session; so are sessions of the development
//! sign-in once `dev_login` is off.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tower_sessions::Session;

use super::session::{METHOD_DEV, SIGN_IN_METHOD, SIGNED_IN_AT, USER_ID};
use crate::accounts::{self, CurrentUser};
use crate::config::Config;
use crate::state::AppState;
use app::error::AppError;

/// Reads the signed-in user from the session, ending sessions past their maximum age and
/// development sign-ins when the development sign-in is off.
pub async fn current_user(
    session: &Session,
    db: &DatabaseConnection,
    config: &Config,
) -> Result<Option<CurrentUser>, AppError> {
    let user_id: Option<i32> = session.get(USER_ID).await.map_err(session_error)?;
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let signed_in_at: i64 = session
        .get(SIGNED_IN_AT)
        .await
        .map_err(session_error)?
        .unwrap_or(0);
    let age_ms = chrono::Utc::now().timestamp_millis() - signed_in_at;
    if age_ms > (config.session_max_age_secs as i64).saturating_mul(1000) {
        session.flush().await.map_err(session_error)?;
        return Ok(None);
    }
    let user = accounts::load(db, user_id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot load the signed-in user");
        AppError::Internal
    })?;
    if !config.dev_login {
        let method: Option<String> = session.get(SIGN_IN_METHOD).await.map_err(session_error)?;
        // Sessions from before the method was recorded: the development sign-in's users
        // are the ones with a `dev:` subject.
        let dev = match method.as_deref() {
            Some(m) => m == METHOD_DEV,
            None => user.as_ref().is_some_and(|u| u.sub.starts_with("dev:")),
        };
        if dev {
            tracing::info!(
                user_id,
                "ending a development sign-in session: dev_login is off"
            );
            session.flush().await.map_err(session_error)?;
            return Ok(None);
        }
    }
    Ok(user)
}

fn session_error(e: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %e, "session store error");
    AppError::Internal
}

/// The signed-in user, or [`AppError::Unauthenticated`].
pub fn require(user: Option<CurrentUser>) -> Result<CurrentUser, AppError> {
    user.ok_or(AppError::Unauthenticated)
}

/// Admins only.
pub fn require_admin(user: &CurrentUser) -> Result<(), AppError> {
    if user.admin {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// Members of the team, and admins.
pub fn require_member(user: &CurrentUser, team: &str) -> Result<(), AppError> {
    if user.admin || user.is_member(team) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// Extractor: the current user, if any, for axum handlers.
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError(AppError::Internal))?;
        Ok(MaybeUser(
            current_user(&session, &state.db, &state.config)
                .await
                .map_err(ApiError)?,
        ))
    }
}

/// An [`AppError`] answered as JSON with its status: `{"error": kind, "message": …}`.
pub struct ApiError(pub AppError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = serde_json::to_value(&self.0)
            .ok()
            .and_then(|v| v.get("kind").cloned())
            .unwrap_or_default();
        (
            status,
            Json(json!({ "error": kind, "message": self.0.to_string() })),
        )
            .into_response()
    }
}
