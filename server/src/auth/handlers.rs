//! The sign-in routes: `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout`,
//! `POST /auth/dev/sign-in` (development sign-in) and `GET /api/v1/me`.

use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::current::{ApiError, MaybeUser};
use super::oidc::{Attempt, CallbackParams, LoginError};
use super::session::{OIDC_ATTEMPT, SIGN_IN_FAILURE, SIGNED_IN_AT, USER_ID, random_token};
use super::{csrf, safe_next, session};
use crate::accounts::{self, Identity};
use crate::state::AppState;
use app::api::SignInFailure;
use app::error::AppError;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/dev/sign-in", post(dev_sign_in))
        .route("/api/v1/me", get(me))
}

#[derive(Debug, Deserialize)]
struct NextParam {
    next: Option<String>,
}

/// Where a failed sign-in lands: a page that says what happened and offers to try again.
/// The words travel in the session, not the URL, so nobody can put text on that page with a
/// crafted link.
async fn failed(state: &AppState, session: &Session, error: &LoginError, next: &str) -> Response {
    tracing::warn!(code = error.code(), %error, "sign-in failed");
    state.metrics.sign_in(error.code());
    let failure = SignInFailure {
        reason: error.code().to_string(),
        detail: error.to_string(),
    };
    if let Err(e) = session.insert(SIGN_IN_FAILURE, &failure).await {
        return internal(e);
    }
    Redirect::to(&format!(
        "/auth/failed?reason={}&next={}",
        error.code(),
        urlencode(next)
    ))
    .into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in could not use the session store");
    ApiError(AppError::Internal).into_response()
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<NextParam>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(provider) = state.oidc.as_ref() else {
        if state.config.dev_login {
            return Redirect::to(&format!("/auth/dev?next={}", urlencode(&next))).into_response();
        }
        return failed(
            &state,
            &session,
            &LoginError::Config("no OpenID provider is configured (oidc_client_id)".into()),
            &next,
        )
        .await;
    };
    match provider.start(next.clone()).await {
        Ok((url, attempt)) => {
            // A new attempt replaces an older one: only the latest callback is accepted.
            if let Err(e) = session.insert(OIDC_ATTEMPT, &attempt).await {
                return internal(e);
            }
            Redirect::to(&url).into_response()
        }
        Err(e) => failed(&state, &session, &e, &next).await,
    }
}

async fn callback(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<CallbackParams>,
) -> Response {
    // Only an answer to this browser's own attempt (matching state) uses the attempt up; a
    // stray or forged callback cannot cancel a sign-in in progress.
    let attempt: Option<Attempt> = match session.get(OIDC_ATTEMPT).await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let next = attempt
        .as_ref()
        .map_or_else(|| "/".to_string(), |a| a.next.clone());
    let ours = attempt
        .as_ref()
        .zip(params.state.as_deref())
        .is_some_and(|(a, s)| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                a.state.as_bytes(),
                s.as_bytes(),
            ))
        });
    if !ours {
        let error = if attempt.is_some() {
            LoginError::State
        } else {
            LoginError::Attempt
        };
        return failed(&state, &session, &error, &next).await;
    }
    if let Err(e) = session.remove::<Attempt>(OIDC_ATTEMPT).await {
        return internal(e);
    }
    let Some(provider) = state.oidc.as_ref() else {
        return failed(
            &state,
            &session,
            &LoginError::Config("no OpenID provider is configured".into()),
            &next,
        )
        .await;
    };
    match provider.finish(&params, attempt).await {
        Ok(identity) => {
            complete_sign_in(&state, &session, &identity, session::METHOD_OIDC, &next).await
        }
        Err(e) => failed(&state, &session, &e, &next).await,
    }
}

/// Records the sign-in and starts a fresh session (new id: no session fixation).
async fn complete_sign_in(
    state: &AppState,
    session: &Session,
    identity: &Identity,
    method: &str,
    next: &str,
) -> Response {
    let user_id = match accounts::sign_in(&state.db, identity, &state.group_policy()).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the sign-in");
            return ApiError(AppError::Internal).into_response();
        }
    };
    let result = async {
        session.cycle_id().await?;
        session.insert(USER_ID, user_id).await?;
        session
            .insert(SIGNED_IN_AT, chrono::Utc::now().timestamp_millis())
            .await?;
        session.insert(session::CSRF_TOKEN, random_token()).await?;
        session.insert(session::SIGN_IN_METHOD, method).await?;
        session.remove_value(SIGN_IN_FAILURE).await?;
        Ok::<_, tower_sessions::session::Error>(())
    }
    .await;
    if let Err(e) = result {
        return internal(e);
    }
    tracing::info!(user = %identity.username, "signed in");
    state.metrics.sign_in("success");
    Redirect::to(next).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf_token: String,
}

async fn logout(
    headers: axum::http::HeaderMap,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Response {
    if !csrf::token_matches(&session, &headers, &form.csrf_token).await {
        return (
            StatusCode::FORBIDDEN,
            "Sign-out refused: the form is out of date. Reload the page and sign out again.\n",
        )
            .into_response();
    }
    if let Err(e) = session.flush().await {
        return internal(e);
    }
    Redirect::to("/").into_response()
}

#[derive(Debug, Deserialize)]
struct DevForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: String,
    next: Option<String>,
}

/// A FAS-like name: letters, digits, `-`, `_`, `.`, starting with a letter.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The development sign-in: any username with any groups. Only mounted on loopback (the
/// config refuses `dev_login` elsewhere) and only when enabled.
async fn dev_sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    session: Session,
    Form(form): Form<DevForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    // Loopback only: a proxy in front (which would make the loopback listener public)
    // announces itself with forwarding headers.
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if !state.config.dev_login || proxied {
        return (
            StatusCode::NOT_FOUND,
            "The development sign-in is turned off (dev_login).\n",
        )
            .into_response();
    }
    let back = |error: &str| {
        Redirect::to(&format!(
            "/auth/dev?error={}&username={}&groups={}&next={}",
            urlencode(error),
            urlencode(&form.username),
            urlencode(&form.groups),
            urlencode(&next)
        ))
        .into_response()
    };
    if !csrf::token_matches(&session, &headers, &form.csrf_token).await {
        return back("The form was out of date; it has been renewed. Sign in again.");
    }
    let username = form.username.trim();
    if !valid_name(username) {
        return back(
            "Enter a username of letters, digits, '-', '_' or '.', starting with a letter.",
        );
    }
    let groups: Vec<String> = form
        .groups
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = groups.iter().find(|g| !valid_name(g)) {
        return back(&format!(
            "{bad:?} is not a group name: use letters, digits, '-', '_' or '.'"
        ));
    }
    let identity = Identity {
        sub: format!("dev:{username}"),
        username: username.to_string(),
        display_name: None,
        email: None,
        groups,
    };
    complete_sign_in(&state, &session, &identity, session::METHOD_DEV, &next).await
}

async fn me(MaybeUser(user): MaybeUser) -> Response {
    match user {
        Some(u) => Json(json!({
            "username": u.username,
            "groups": u.groups,
            "teams": u.teams,
            "admin": u.admin,
        }))
        .into_response(),
        None => ApiError(AppError::Unauthenticated).into_response(),
    }
}
