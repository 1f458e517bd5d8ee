//! The page for every address that is not one of ours (HTTP 404).

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }

    view! {
        <Title text="Page not found"/>
        <section class="panel empty-state" aria-labelledby="nf-title">
            <h1 id="nf-title">"Page not found"</h1>
            <p>"There is no page at this address. It may have moved, or the link may be mistyped."</p>
            <p><a class="button" href="/">"Go to the pool status"</a></p>
        </section>
    }
}
