//! What every form post of the web UI shares. Forms are plain HTML posts, so they work
//! before the WebAssembly loads and after: a post is checked (signed in, allowed, the form's
//! token), acted on, and answered with a redirect (303) to a page, which reads the outcome
//! once from the session (a "flash"): a notice, or errors by field with what was typed,
//! minus every secret. Nothing secret is ever put in a flash, a URL or a log line.

use app::api::credentials::FormState;
use app::error::AppError;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::accounts::CurrentUser;
use crate::auth::csrf;
use crate::auth::current::ApiError;

/// The session key of the one-time outcome of a form post.
const FLASH: &str = "form_flash";

/// The outcome of a form post, for the page it redirects to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Flash {
    /// Which form it answers, e.g. `new`, `7:rename`, `request-3:approve`.
    pub form: String,
    pub state: FormState,
    pub notice: Option<String>,
}

/// Takes the flash if `belongs` says it answers one of this page's forms.
pub async fn take_flash(session: &Session, belongs: impl Fn(&str) -> bool) -> Option<Flash> {
    let flash: Flash = session.get(FLASH).await.ok().flatten()?;
    if !belongs(&flash.form) {
        return None;
    }
    let _ = session.remove_value(FLASH).await;
    Some(flash)
}

/// The user behind a form post, once they are signed in, allowed by `authorize`, and the
/// form carries their token; otherwise the answer to give: a redirect to sign in (back to
/// `back`), a refusal, or "out of date".
pub async fn poster(
    user: Option<CurrentUser>,
    session: &Session,
    headers: &HeaderMap,
    token: Option<&str>,
    back: &str,
    authorize: impl FnOnce(&CurrentUser) -> Result<(), AppError>,
) -> Result<CurrentUser, Response> {
    let Some(user) = user else {
        let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        return Err(Redirect::to(&format!("/auth/login?next={next}")).into_response());
    };
    if let Err(e) = authorize(&user) {
        return Err(ApiError(e).into_response());
    }
    if !csrf::token_matches(session, headers, token.unwrap_or("")).await {
        return Err(ApiError(AppError::BadRequest(
            "the form was out of date; reload the page and submit it again".into(),
        ))
        .into_response());
    }
    Ok(user)
}

/// Redirects to `to` with `flash` for the page there.
pub async fn flash_and_redirect(session: &Session, flash: Flash, to: &str) -> Response {
    if let Err(e) = session.insert(FLASH, &flash).await {
        tracing::error!(error = %e, "cannot keep a form's outcome in the session");
        return ApiError(AppError::Internal).into_response();
    }
    Redirect::to(to).into_response()
}

/// Answers a post: back to `back` with the notice, or with the refusal's field errors beside
/// what the form keeps; any other error is an error page.
pub async fn respond(
    session: &Session,
    form: String,
    result: Result<String, AppError>,
    kept: FormState,
    back: &str,
) -> Response {
    let flash = match result {
        Ok(notice) => Flash {
            form,
            notice: Some(notice),
            ..Flash::default()
        },
        Err(AppError::Invalid(errors)) => Flash {
            form,
            state: FormState { errors, ..kept },
            notice: None,
        },
        Err(e) => return ApiError(e).into_response(),
    };
    flash_and_redirect(session, flash, back).await
}

/// `?key=value` pairs, each value URL-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("?{}", s.finish())
}
