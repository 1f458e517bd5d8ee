//! How pages show an error: sign-in prompts (and, when rendered on the server, a redirect to
//! the sign-in), refusals with the right HTTP status, and other errors as alerts.

use leptos::prelude::*;
use leptos_router::hooks::use_location;

use crate::error::AppError;
use crate::format::login_url;

#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    let location = use_location();
    let search = location.search.get_untracked();
    let path = location.pathname.get_untracked();
    let here = match search.trim_start_matches('?') {
        "" => path,
        query => format!("{path}?{query}"),
    };
    #[cfg(feature = "ssr")]
    {
        match &error {
            AppError::Unauthenticated => leptos_axum::redirect(&login_url(&here)),
            other => {
                if let Some(response) = use_context::<leptos_axum::ResponseOptions>()
                    && let Ok(status) = http::StatusCode::from_u16(other.status_code())
                {
                    response.set_status(status);
                }
            }
        }
    }
    match error {
        AppError::Unauthenticated => view! {
            <div class="alert alert-info" role="alert">
                "Sign in to see this page. "
                <a href=login_url(&here) rel="external">"Sign in"</a>
            </div>
        }
        .into_any(),
        AppError::Forbidden => view! {
            <div class="alert alert-error" role="alert" data-testid="forbidden">
                <strong>"Not allowed. "</strong>
                "You are signed in, but this page is for members of the team or Copr admins. \
                 If you should be one, ask to be added to the group in Fedora Accounts, then sign in again."
            </div>
        }
        .into_any(),
        other => view! {
            <div class="alert alert-error" role="alert">{other.to_string()}</div>
        }
        .into_any(),
    }
}
