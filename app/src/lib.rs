//! The copr-pools web UI: the HTML shell, the router, the pages and the types the browser
//! shares with the server.
//!
//! This crate is compiled twice: for the server (feature `ssr`) and to WebAssembly (feature
//! `hydrate`). It must never depend on the server crate, the database or anything secret: the
//! server hands it a [`api::Backend`] through Leptos context, and server functions call that.

#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod error;
pub mod format;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    ParamSegment, SsrMode, StaticSegment,
    components::{Route, Router, Routes},
};

use crate::api::get_session;
use crate::components::layout::{Layout, SessionResource};
use crate::pages::admin::AdminPage;
use crate::pages::auth::{DevSignInPage, SignInFailedPage};
use crate::pages::credentials::{AddCredentialPage, CredentialDetailPage};
use crate::pages::pools::PoolDetailPage;
use crate::pages::requests::{NewRequestPage, PriceListPage, RequestDetailPage, RequestQueuePage};
use crate::pages::routing::{RoutingAdminPage, TokensAdminPage};
use crate::pages::teams::{TeamPage, TeamsPage};
use crate::pages::{not_found::NotFound, status::StatusPage};

/// The version shown in the footer and reported by `/healthz`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The document around every server-rendered page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(SessionResource(Resource::new(|| (), |_| get_session())));

    view! {
        <Stylesheet id="leptos" href="/pkg/copr-pools.css"/>
        <Title formatter=|page: String| {
            if page.is_empty() { "copr-pools".to_string() } else { format!("{page} · copr-pools") }
        }/>
        <Router>
            <Layout>
                // Async rendering sends each page complete, so it reads the same with
                // JavaScript disabled as after hydration.
                <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=StatusPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("teams") view=TeamsPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("pools"), ParamSegment("name")) view=PoolDetailPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("teams"), ParamSegment("name")) view=TeamPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("teams"), ParamSegment("name"), StaticSegment("credentials"), StaticSegment("new")) view=AddCredentialPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("teams"), ParamSegment("name"), StaticSegment("credentials"), ParamSegment("id")) view=CredentialDetailPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("admin") view=AdminPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("admin"), StaticSegment("requests")) view=RequestQueuePage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("admin"), StaticSegment("prices")) view=PriceListPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("admin"), StaticSegment("routing")) view=RoutingAdminPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("admin"), StaticSegment("tokens")) view=TokensAdminPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("teams"), ParamSegment("name"), StaticSegment("requests"), StaticSegment("new")) view=NewRequestPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("requests"), ParamSegment("id")) view=RequestDetailPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("auth"), StaticSegment("dev")) view=DevSignInPage ssr=SsrMode::Async/>
                    <Route path=(StaticSegment("auth"), StaticSegment("failed")) view=SignInFailedPage ssr=SsrMode::Async/>
                </Routes>
            </Layout>
        </Router>
    }
}

/// Entry point of the WebAssembly bundle: attach to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
