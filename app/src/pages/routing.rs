//! Routing pages: the admins' rules (`/admin/routing`) with a build tester, the API tokens
//! Copr polls with (`/admin/tokens`), and the "where would my builds go" preview that the
//! team page and the request form show.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::requests::FormValues;
use crate::api::routing::*;
use crate::components::notice::ErrorNotice;
use crate::error::FieldError;
use crate::format::textarea_text;
use crate::pages::requests::{Problems, error_of};

/// Where a rule came from, for people.
fn origin_label(r: &RuleView) -> AnyView {
    match r.request_id() {
        Some(id) => {
            view! { <a href=format!("/requests/{id}")>{format!("request #{id}")}</a> }.into_any()
        }
        None => view! { <span>{r.origin.clone()}</span> }.into_any(),
    }
}

/// `/admin/routing`: the rules in order, each editable, movable, switchable; a form to add
/// one; the tester (`?owner=…&project=…&chroot=…&package=…`).
#[component]
pub fn RoutingAdminPage() -> impl IntoView {
    let query = use_query_map();
    let test = move || {
        let q = query.read();
        ["owner", "project", "chroot", "package"]
            .iter()
            .filter_map(|k| q.get(k).map(|v| (k.to_string(), v)))
            .collect::<FormValues>()
    };
    let page = Resource::new(test, |t| get_routing(Some(t)));
    view! {
        <Title text="Routing rules"/>
        <div class="page-head"><div>
            <h1>"Routing rules"</h1>
            <p class="lede">"The tags Copr adds to builds whose owner/project/chroot/package matches a pattern, applied in this order (Copr's EXTRA_BUILDCHROOT_TAGS). Copr polls them from "<code>"/api/v1/routing"</code>" with an "<a href="/admin/tokens">"API token"</a>"."</p>
        </div></div>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <RoutingBody p/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RoutingBody(p: RoutingPage) -> impl IntoView {
    let token = p.csrf_token.clone();
    let count = p.rules.len();
    // A failed form's values and errors belong to the form they came from.
    let mine = |form: &str| p.form.as_deref() == Some(form);
    let add_values = if mine("add") {
        p.values.clone()
    } else {
        FormValues::new()
    };
    let add_errors = if mine("add") {
        p.errors.clone()
    } else {
        Vec::new()
    };
    let v = |k: &str| add_values.get(k).cloned().unwrap_or_default();
    view! {
        <p class="muted small" data-testid="routing-version">{format!("Version {}, changed {}.", p.version, p.changed_at)}</p>
        {p.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
        {(!p.checks.is_empty()).then(|| view! {
            <div class="alert alert-warning" data-testid="routing-checks">
                <strong>"Check these rules:"</strong>
                <ul>{p.checks.iter().map(|c| view! { <li>{c.clone()}</li> }).collect_view()}</ul>
            </div>
        })}
        <section class="section" aria-labelledby="rules-title">
            <h2 id="rules-title">"Rules"</h2>
            {if p.rules.is_empty() {
                view! { <p class="panel empty-state" data-testid="no-rules">"No rules yet: every build gets only its chroot's tags. Approved pool requests add the rules their pools need; add others below, or import Copr's with "<code>"copr-pools routing import copr.conf"</code>"."</p> }.into_any()
            } else {
                view! {
                    <ol class="rule-list" data-testid="rule-list">
                        {p.rules.iter().map(|r| {
                            let form = format!("rule-{}", r.id);
                            let failed = mine(&form);
                            let values = if failed { p.values.clone() } else { FormValues::new() };
                            let errors = if failed { p.errors.clone() } else { Vec::new() };
                            view! { <RuleItem r=r.clone() token=token.clone() count values errors/> }
                        }).collect_view()}
                    </ol>
                }.into_any()
            }}
        </section>
        <form method="post" action="/admin/routing" class="panel form section" data-testid="add-rule-form">
            <h2>"Add a rule"</h2>
            <Problems errors=add_errors.clone()/>
            <input type="hidden" name="csrf_token" value=token.clone()/>
            <RuleFields prefix="add".to_string() pattern=v("pattern") tags=v("tags") note=v("note") errors=add_errors.clone()/>
            <label for="add-position">"Place (optional)"</label>
            <input id="add-position" name="position" inputmode="numeric" value=v("position") aria-describedby="add-position-help"/>
            <p class="help" id="add-position-help">"1 puts it first; empty puts it last. Order matters only for the order of the tags a build gets."</p>
            <AcceptWarnings errors=add_errors prefix="add".to_string()/>
            <button type="submit" class="button">"Add the rule"</button>
        </form>
        <Tester tested=p.tested.clone() errors=p.test_errors.clone()/>
    }
}

/// Pattern, tags and note fields, with their errors.
#[component]
fn RuleFields(
    prefix: String,
    pattern: String,
    tags: String,
    note: String,
    errors: Vec<FieldError>,
) -> impl IntoView {
    let id = |k: &str| format!("{prefix}-{k}");
    let pattern_error = error_of(&errors, "pattern");
    let tags_error = error_of(&errors, "tags");
    view! {
        <label for=id("pattern")>"Pattern"</label>
        <input id=id("pattern") name="pattern" value=pattern spellcheck="false" autocomplete="off" required
            aria-invalid=pattern_error.is_some().then_some("true") aria-describedby=id("pattern-help")/>
        {pattern_error.map(|e| view! { <p class="field-error">{e}</p> })}
        <p class="help" id=id("pattern-help")>"A Python regular expression matched from the start of owner/project[:dirsuffix]/chroot/package, e.g. @asahi/kernel/.*(x86_64|aarch64)/kernel. Allow project[^/]* to catch pull-request directories."</p>
        <label for=id("tags")>"Tags"</label>
        <input id=id("tags") name="tags" value=tags spellcheck="false" autocomplete="off" required
            aria-invalid=tags_error.is_some().then_some("true") aria-describedby=id("tags-help")/>
        {tags_error.map(|e| view! { <p class="field-error">{e}</p> })}
        <p class="help" id=id("tags-help")>"Separated by spaces, e.g. on_demand_powerful. Some active pool must offer each."</p>
        <label for=id("note")>"Note (optional)"</label>
        <input id=id("note") name="note" value=note placeholder="https://github.com/fedora-copr/copr/issues/2966"/>
    }
}

/// The warnings a save needs accepted, and the box that accepts them.
#[component]
fn AcceptWarnings(errors: Vec<FieldError>, prefix: String) -> impl IntoView {
    let warning = error_of(&errors, "accept_warnings");
    let id = format!("{prefix}-accept");
    view! {
        {warning.clone().map(|w| view! { <p class="field-error" data-testid="warnings">{w}</p> })}
        <label class="check"><input type="checkbox" id=id name="accept_warnings" value="on"/>" I have read the warnings"</label>
    }
}

/// One rule: what it does, and its edit, move, switch and delete forms.
#[component]
fn RuleItem(
    r: RuleView,
    token: String,
    count: usize,
    values: FormValues,
    errors: Vec<FieldError>,
) -> impl IntoView {
    let base = format!("/admin/routing/{}", r.id);
    let prefix = format!("rule-{}", r.id);
    let editing = !errors.is_empty();
    let warned = error_of(&errors, "accept_warnings").is_some();
    let kept = |k: &str, default: String| values.get(k).cloned().unwrap_or(default);
    let pattern = kept("pattern", r.pattern.clone());
    let tags = kept("tags", r.tags.join(" "));
    let note = kept("note", r.note.clone().unwrap_or_default());
    let (up, down) = (r.position - 1, r.position + 1);
    view! {
        <li class=if r.enabled { "rule panel" } else { "rule panel rule-disabled" } data-testid="rule">
            <div class="rule-head">
                <span class="rule-position" aria-label="Place">{r.position}</span>
                <code class="rule-pattern">{r.pattern.clone()}</code>
                " → "
                {r.tags.iter().map(|t| view! { <code class="tag">{t.clone()}</code> }).collect_view()}
                {(!r.enabled).then(|| view! { <span class="badge badge-paused">"disabled"</span> })}
            </div>
            <p class="small muted">"From "{origin_label(&r)}{format!(", changed {}", r.updated_at)}{r.note.clone().map(|n| format!(" · {n}"))}</p>
            <Problems errors=errors.clone()/>
            <details open=editing>
                <summary>{format!("Edit rule {}", r.position)}</summary>
                <form method="post" action=base.clone() class="form">
                    <input type="hidden" name="csrf_token" value=token.clone()/>
                    <RuleFields prefix=prefix.clone() pattern tags note errors=errors.clone()/>
                    <AcceptWarnings errors=errors.clone() prefix=prefix.clone()/>
                    <button type="submit" class="button button-small">"Save"</button>
                </form>
            </details>
            <div class="button-row">
                {(r.position > 1).then(|| view! {
                    <form method="post" action=format!("{base}/move") class="inline-form">
                        <input type="hidden" name="csrf_token" value=token.clone()/>
                        <input type="hidden" name="position" value=up.to_string()/>
                        <button type="submit" class="button button-secondary button-small" aria-label=format!("Move rule {} up", r.position)>"Up"</button>
                    </form>
                })}
                {((r.position as usize) < count).then(|| view! {
                    <form method="post" action=format!("{base}/move") class="inline-form">
                        <input type="hidden" name="csrf_token" value=token.clone()/>
                        <input type="hidden" name="position" value=down.to_string()/>
                        <button type="submit" class="button button-secondary button-small" aria-label=format!("Move rule {} down", r.position)>"Down"</button>
                    </form>
                })}
                <form method="post" action=format!("{base}/enabled") class="inline-form">
                    <input type="hidden" name="csrf_token" value=token.clone()/>
                    <input type="hidden" name="enabled" value=if r.enabled { "off" } else { "on" }/>
                    {(!r.enabled && warned).then(|| view! { <label class="check"><input type="checkbox" name="accept_warnings" value="on"/>" accept the warnings"</label> })}
                    <button type="submit" class="button button-secondary button-small">{if r.enabled { format!("Disable rule {}", r.position) } else { format!("Enable rule {}", r.position) }}</button>
                </form>
                <form method="post" action=format!("{base}/delete") class="inline-form">
                    <input type="hidden" name="csrf_token" value=token.clone()/>
                    <button type="submit" class="button button-danger button-small">{format!("Delete rule {}", r.position)}</button>
                </form>
            </div>
        </li>
    }
}

/// "Which tags would this build get?"
#[component]
fn Tester(tested: Option<Route>, errors: Vec<FieldError>) -> impl IntoView {
    let query = use_query_map();
    let q = move |k: &str| query.read_untracked().get(k).unwrap_or_default();
    view! {
        <form method="get" action="/admin/routing" class="panel form section" data-testid="tester">
            <h2>"Test a build"</h2>
            <p class="help">"Which tags one build would get, from which rules, and which pools could take it."</p>
            <div class="field-grid">
                {[("owner", "Owner", "@asahi"), ("project", "Project", "kernel or kernel:pr:12"), ("chroot", "Chroot", "fedora-rawhide-aarch64"), ("package", "Package", "kernel")].into_iter().map(|(k, label, ph)| {
                    let id = format!("test-{k}");
                    let e = error_of(&errors, k);
                    view! {
                        <div>
                            <label for=id.clone()>{label}</label>
                            <input id=id name=k value=q(k) placeholder=ph spellcheck="false" aria-invalid=e.is_some().then_some("true")/>
                            {e.map(|e| view! { <p class="field-error">{e}</p> })}
                        </div>
                    }
                }).collect_view()}
            </div>
            <button type="submit" class="button">"Test"</button>
            {tested.map(|r| view! { <RouteTable routes=vec![r]/> })}
        </form>
    }
}

/// Builds with their tags, rules and pools.
#[component]
pub fn RouteTable(routes: Vec<Route>) -> impl IntoView {
    view! {
        <div class="table-wrap" role="region" aria-label="Where the builds go" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="route-table">
                <thead><tr><th scope="col">"Build"</th><th scope="col">"Tags added"</th><th scope="col">"By rules"</th><th scope="col">"Pools that take it"</th></tr></thead>
                <tbody>
                    {routes.into_iter().map(|r| match r.error {
                        Some(e) => view! {
                            <tr><th scope="row"><code>{r.build}</code></th><td colspan="3" class="field-error">{e}</td></tr>
                        }.into_any(),
                        None => view! {
                            <tr>
                                <th scope="row"><code>{r.build}</code></th>
                                <td data-label="Tags added">{if r.tags.is_empty() { view! { <span class="muted">"none"</span> }.into_any() } else { r.tags.iter().map(|t| view! { <code class="tag">{t.clone()}</code> }).collect_view().into_any() }}</td>
                                <td data-label="By rules">{r.rules.iter().map(|m| if m.position == 0 { format!("the requested pool's scope ({})", m.pattern) } else { format!("{} ({})", m.position, m.pattern) }).collect::<Vec<_>>().join(", ")}</td>
                                <td data-label="Pools that take it" data-testid="route-pools">{match r.pools.first() {
                                    Some(first) => view! { <span><strong>{first.clone()}</strong>{(r.pools.len() > 1).then(|| format!(" (then {})", r.pools[1..].join(", ")))}</span> }.into_any(),
                                    None => view! { <span class="field-error">"none: it would wait until a pool offering its tags runs"</span> }.into_any(),
                                }}</td>
                            </tr>
                        }.into_any(),
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// The preview of where `ask`'s builds go, live: it follows `ask` once hydrated.
#[component]
pub fn BuildPreview(ask: Signal<PreviewAsk>) -> impl IntoView {
    let routes = Resource::new(move || ask.get(), route_preview);
    view! {
        <Transition fallback=|| view! { <p class="muted" role="status">"Working out where they go…"</p> }>
            {move || Suspend::new(async move {
                match routes.await {
                    Ok(r) if r.is_empty() => view! { <p class="muted small" data-testid="no-builds">"Type builds above, one per line, to see where they would go."</p> }.into_any(),
                    Ok(r) => view! { <RouteTable routes=r/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The team page's "where would my builds go": a GET form, so it works before hydration;
/// once hydrated the answer follows the text as it is typed.
#[component]
pub fn TeamBuildPreview(team: String) -> impl IntoView {
    let query = use_query_map();
    let builds = RwSignal::new(query.read_untracked().get("builds").unwrap_or_default());
    let ask = {
        let team = team.clone();
        Signal::derive(move || PreviewAsk {
            team: team.clone(),
            builds: builds.get(),
            ..PreviewAsk::default()
        })
    };
    let initial = textarea_text(&builds.get_untracked());
    view! {
        <section class="section" aria-labelledby="preview-title" id="where">
            <h2 id="preview-title">"Where would my builds go?"</h2>
            <form method="get" action=format!("/teams/{team}#where") class="panel form" data-testid="team-preview">
                <label for="preview-builds">"Builds, one per line"</label>
                <textarea id="preview-builds" name="builds" rows="3" spellcheck="false" aria-describedby="preview-help"
                    on:input=move |ev| builds.set(event_target_value(&ev))>{initial}</textarea>
                <p class="help" id="preview-help">"owner/project/chroot/package, e.g. @"{team.clone()}"/llvm/fedora-rawhide-x86_64/clang"</p>
                <button type="submit" class="button button-secondary">"Show where they go"</button>
            </form>
            <BuildPreview ask/>
        </section>
    }
}

/// `/admin/tokens`: the API tokens Copr polls the rules with.
#[component]
pub fn TokensAdminPage() -> impl IntoView {
    let page = Resource::new(|| (), |_| get_tokens());
    view! {
        <Title text="API tokens"/>
        <div class="page-head"><div>
            <h1>"API tokens"</h1>
            <p class="lede">"Copr's frontend reads the "<a href="/admin/routing">"routing rules"</a>" with one of these, as "<code>"Authorization: Bearer …"</code>". A token is shown once, when it is made; only its hash is kept."</p>
        </div></div>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => {
                        let name_error = error_of(&p.errors, "name");
                        let typed = p.values.get("name").cloned().unwrap_or_default();
                        view! {
                            {p.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
                            {if p.tokens.is_empty() {
                                view! { <p class="panel empty-state" data-testid="no-tokens">"No tokens yet. Make one for each Copr frontend (production, staging) below."</p> }.into_any()
                            } else {
                                view! {
                                    <div class="table-wrap" role="region" aria-label="Tokens" tabindex="0">
                                        <table class="data-table stack-on-phone" data-testid="token-table">
                                            <thead><tr><th scope="col">"Name"</th><th scope="col">"Ends with"</th><th scope="col">"Made"</th><th scope="col">"Last used"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                                            <tbody>
                                                {p.tokens.iter().map(|t| view! {
                                                    <tr>
                                                        <th scope="row">{t.name.clone()}</th>
                                                        <td data-label="Ends with"><code>{format!("…{}", t.hint)}</code></td>
                                                        <td data-label="Made" class="nowrap">{format!("{} by {}", t.created_at, t.created_by)}</td>
                                                        <td data-label="Last used" class="nowrap">{t.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                                                        <td>{match &t.revoked_at {
                                                            Some(r) => view! { <span class="badge badge-retired">{format!("revoked {r}")}</span> }.into_any(),
                                                            None => view! {
                                                                <form method="post" action=format!("/admin/tokens/{}/revoke", t.name) class="inline-form">
                                                                    <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                                                                    <button type="submit" class="button button-danger button-small">{format!("Revoke {}", t.name)}</button>
                                                                </form>
                                                            }.into_any(),
                                                        }}</td>
                                                    </tr>
                                                }).collect_view()}
                                            </tbody>
                                        </table>
                                    </div>
                                }.into_any()
                            }}
                            <form method="post" action="/admin/tokens" class="panel form section" data-testid="token-form">
                                <h2>"Make a token"</h2>
                                <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                                <label for="token-name">"Name"</label>
                                <input id="token-name" name="name" value=typed placeholder="copr-frontend-prod" required aria-invalid=name_error.is_some().then_some("true")/>
                                {name_error.map(|e| view! { <p class="field-error">{e}</p> })}
                                <button type="submit" class="button">"Make the token"</button>
                            </form>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
