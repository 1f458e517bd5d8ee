//! The frame around every page: skip link, the development sign-in banner, header with
//! navigation and who is signed in, main landmark, footer.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::VERSION;
use crate::api::SessionInfo;
use crate::error::AppError;
use crate::format::login_url;

/// The session, fetched once per page load and shared through context.
#[derive(Clone, Copy)]
pub struct SessionResource(pub Resource<Result<SessionInfo, AppError>>);

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let session = expect_context::<SessionResource>().0;
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                session.await.ok().filter(|s| s.dev_login).map(|_| view! {
                    <div class="dev-banner" role="note" data-testid="dev-banner">
                        <div class="container">
                            <strong>"Development sign-in is on."</strong>
                            " Anyone can sign in here as anyone; it only works on this machine's loopback address."
                        </div>
                    </div>
                })
            })}
        </Suspense>
        <header class="site-header">
            <div class="container header-row">
                <a class="brand" href="/">
                    <span class="brand-mark" aria-hidden="true">"⬢"</span>
                    " copr-pools"
                </a>
                <nav aria-label="Main" class="main-nav">
                    <Suspense fallback=|| view! { <NavLinks info=None/> }>
                        {move || Suspend::new(async move {
                            let info = session.await.ok();
                            view! { <NavLinks info/> }
                        })}
                    </Suspense>
                </nav>
            </div>
        </header>
        <main id="main" class="container" tabindex="-1">
            {children()}
        </main>
        <footer class="site-footer">
            <div class="container footer-row">
                <span>{format!("copr-pools {VERSION}")}</span>
                <span>"Self-service builder pools for Fedora Copr"</span>
            </div>
        </footer>
    }
}

/// A page's title (also the document title), its one-line purpose, and optional controls.
#[component]
pub fn PageHead(
    title: &'static str,
    lede: &'static str,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <Title text=title/>
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="lede">{lede}</p>
            </div>
            {children.map(|c| c())}
        </div>
    }
}

#[component]
fn NavLinks(info: Option<SessionInfo>) -> impl IntoView {
    let location = use_location();
    let user = info.as_ref().and_then(|i| i.user.clone());
    let token = info
        .as_ref()
        .map(|i| i.csrf_token.clone())
        .unwrap_or_default();
    let signed_in = user.is_some();
    let admin = user.as_ref().is_some_and(|u| u.admin);
    view! {
        <ul class="nav-list">
            <li><A href="/" exact=true>"Status"</A></li>
            {signed_in.then(|| view! { <li><A href="/teams">"My teams"</A></li> })}
            {admin.then(|| view! { <li><A href="/admin">"Admin"</A></li> })}
        </ul>
        {match user {
            Some(u) => view! {
                <div class="user-menu">
                    <span class="user-name" data-testid="signed-in-as" title=u.teams.join(", ")>
                        {u.display_name.clone().unwrap_or_else(|| u.username.clone())}
                        {(u.display_name.is_some()).then(|| view! { <span class="muted">{format!(" ({})", u.username)}</span> })}
                    </span>
                    {(!u.teams.is_empty()).then(|| view! {
                        <span class="user-teams muted" data-testid="nav-teams">{teams_label(&u.teams)}</span>
                    })}
                    <form method="post" action="/auth/logout" class="inline-form">
                        <input type="hidden" name="csrf_token" value=token/>
                        <button type="submit" class="button button-secondary button-small">"Sign out"</button>
                    </form>
                </div>
            }
            .into_any(),
            None => view! {
                <a class="button button-small" data-testid="sign-in" rel="external"
                    href=move || login_url(&location.pathname.get())>
                    "Sign in"
                </a>
            }
            .into_any(),
        }}
    }
}

/// "team-a, team-b, team-c +2": the user's teams, short enough for the header.
fn teams_label(teams: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut label = teams
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if teams.len() > SHOWN {
        label.push_str(&format!(" +{}", teams.len() - SHOWN));
    }
    label
}
