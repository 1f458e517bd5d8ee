//! The development sign-in form and the page a failed sign-in lands on.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::get_sign_in_failure;
use crate::components::layout::SessionResource;
use crate::format::login_url;

#[component]
pub fn DevSignInPage() -> impl IntoView {
    let session = expect_context::<SessionResource>().0;
    let query = use_query_map();
    let get = move |k: &str| query.read_untracked().get(k).unwrap_or_default();
    let (error, username, groups, next) =
        (get("error"), get("username"), get("groups"), get("next"));
    view! {
        <Title text="Development sign-in"/>
        <h1>"Development sign-in"</h1>
        <Suspense fallback=|| ()>
            {move || {
                let (error, username, groups, next) = (error.clone(), username.clone(), groups.clone(), next.clone());
                Suspend::new(async move {
                    let info = session.await.ok();
                    if !info.as_ref().is_some_and(|i| i.dev_login) {
                        return view! {
                            <p class="alert alert-info">"The development sign-in is turned off on this server. "
                                <a href="/auth/login" rel="external">"Sign in with Fedora Accounts"</a></p>
                        }.into_any();
                    }
                    let token = info.map(|i| i.csrf_token).unwrap_or_default();
                    view! {
                        <p class="lede">"Sign in as any user with any groups, to try copr-pools on this machine. \
                            A group listed in admin_groups makes you an admin."</p>
                        {(!error.is_empty()).then(|| view! { <div class="alert alert-error" role="alert" id="dev-error">{error.clone()}</div> })}
                        <form method="post" action="/auth/dev/sign-in" class="panel form" data-testid="dev-sign-in">
                            <input type="hidden" name="csrf_token" value=token/>
                            <input type="hidden" name="next" value=next/>
                            <label for="dev-username">"Username"</label>
                            <input id="dev-username" name="username" required autocomplete="username" value=username
                                aria-describedby=(!error.is_empty()).then_some("dev-error")/>
                            <label for="dev-groups">"Groups"</label>
                            <input id="dev-groups" name="groups" value=groups aria-describedby="dev-groups-help"/>
                            <p id="dev-groups-help" class="help">"FAS group names separated by commas, e.g. packager, copr-team-llvm"</p>
                            <button type="submit" class="button">"Sign in"</button>
                        </form>
                    }.into_any()
                })
            }}
        </Suspense>
    }
}

#[component]
pub fn SignInFailedPage() -> impl IntoView {
    let query = use_query_map();
    let q = query.read_untracked();
    let reason = q.get("reason").unwrap_or_default();
    // Only a path on this site: the page never links elsewhere whatever the URL says.
    let next = q
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let failure = Resource::new(|| (), |_| get_sign_in_failure());
    let advice = match reason.as_str() {
        "denied" => {
            "If you cancelled on purpose, nothing happened. Otherwise try again and allow copr-pools to read your account."
        }
        "attempt" | "state" => {
            "This happens when a sign-in page was left open too long, or opened twice. Start again from here."
        }
        "unreachable" => {
            "Fedora Accounts may be down or unreachable from this server. Try again in a few minutes."
        }
        "config" => "The server's sign-in settings need fixing; tell this server's admins.",
        _ => "Try again; if it keeps failing, tell this server's admins the time and this message.",
    };
    view! {
        <Title text="Sign-in failed"/>
        <section class="panel empty-state" aria-labelledby="failed-title">
            <h1 id="failed-title">"Sign-in failed"</h1>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    // The words come from this browser's session, never from the address.
                    let detail = failure.await.ok().flatten().map(|f| f.detail)
                        .unwrap_or_else(|| "The sign-in did not complete.".to_string());
                    view! { <p data-testid="sign-in-error">{detail}</p> }
                })}
            </Suspense>
            <p class="muted">{advice}</p>
            <p><a class="button" href=login_url(&next) rel="external">"Try again"</a></p>
        </section>
    }
}
