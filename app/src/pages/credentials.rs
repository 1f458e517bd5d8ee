//! A team's cloud credentials: the list on the team page, the "add a credential" page (one
//! form per kind) and a credential's own page (rename, new secret, revoke).
//!
//! Forms are plain HTML posts, so they work before the WebAssembly loads and after; the
//! server answers with a redirect back here, and what it says (errors by field, what was
//! typed minus the secrets, a notice) arrives with the page. Secrets are never shown: a
//! credential is recognised by its fingerprint and the last four characters of its secret.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::credentials::{
    CredentialView, FieldSpec, FormSpec, FormState, get_credential, get_new_credential, kind_label,
};
use crate::components::notice::ErrorNotice;
use crate::format::textarea_text;

/// The credentials section of a team page.
#[component]
pub fn CredentialList(team: String, credentials: Vec<CredentialView>) -> impl IntoView {
    let add = format!("/teams/{team}/credentials/new");
    view! {
        <section class="section" aria-labelledby="team-credentials">
            <div class="section-head">
                <h2 id="team-credentials">"Cloud credentials"</h2>
                <a class="button button-small" href=add.clone() data-testid="add-credential">"Add a credential"</a>
            </div>
            {if credentials.is_empty() {
                view! {
                    <div class="panel empty-state" data-testid="no-credentials">
                        <p>
                            "No credentials yet. A credential is your team's account at a cloud (AWS, OpenStack, IBM Cloud) \
                             or a libvirt host: a pool your team requests starts its builders with it, so only your \
                             account pays for them. "
                            <a href=add>"Add the first one"</a>
                            "; its secret is encrypted and never shown again."
                        </p>
                    </div>
                }.into_any()
            } else {
                view! {
                    <div class="table-wrap" role="region" aria-labelledby="team-credentials" tabindex="0">
                        <table class="data-table stack-on-phone" data-testid="credential-table">
                            <thead><tr>
                                <th scope="col">"Name"</th><th scope="col">"Kind"</th><th scope="col">"Details"</th>
                                <th scope="col">"Secret"</th><th scope="col">"Last used"</th>
                            </tr></thead>
                            <tbody>
                                {credentials.into_iter().map(|c| {
                                    let href = format!("/teams/{}/credentials/{}", c.team, c.id);
                                    let details = c.fields.iter().map(|(l, v)| format!("{l}: {v}")).collect::<Vec<_>>().join(" · ");
                                    let revoked = c.revoked_at.is_some();
                                    view! {
                                        <tr class:revoked=revoked>
                                            <th scope="row">
                                                <a href=href>{c.name.clone()}</a>
                                                {revoked.then(|| view! { " " <span class="badge badge-retired">"revoked"</span> })}
                                                {c.unreadable.is_some().then(|| view! { " " <span class="badge badge-warning">"unreadable"</span> })}
                                            </th>
                                            <td data-label="Kind">{kind_label(&c.kind)}</td>
                                            <td data-label="Details" class="details">{details}</td>
                                            <td data-label="Secret" class="nowrap"><code>{format!("…{}", c.last4)}</code></td>
                                            <td data-label="Last used" class="nowrap">{c.last_used_at.as_deref().map(day).unwrap_or("never").to_string()}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}

/// `2026-11-28 09:15 UTC` from RFC 3339.
fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t.to_string(),
    }
}

fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

/// `/teams/{name}/credentials/new`: choose a kind, then fill its form.
#[component]
pub fn AddCredentialPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let team = move || params.read().get("name").unwrap_or_default();
    let chosen = move || {
        let q = query.read();
        (q.get("kind"), q.get("variant"))
    };
    let page = Resource::new(
        move || (team(), chosen()),
        |(team, (kind, variant))| get_new_credential(team, kind, variant),
    );
    view! {
        <Title text=move || format!("Add a credential · {}", team())/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => {
                        let back = format!("/teams/{}", p.team);
                        let head = view! {
                            <div class="page-head">
                                <div>
                                    <h1>"Add a credential"</h1>
                                    <p class="lede">"For team " <a href=back>{p.team.clone()}</a>
                                        ". Secrets are encrypted at rest and never shown again, not even to you; \
                                         hooks of your team's pools get them while they run."</p>
                                </div>
                            </div>
                        };
                        match p.chosen.clone() {
                            None => view! { {head} <KindChooser team=p.team.clone() forms=p.forms.clone()/> }.into_any(),
                            Some(spec) => view! {
                                {head}
                                <p><a href=format!("/teams/{}/credentials/new", p.team)>"← Another kind"</a></p>
                                <CredentialForm team=p.team.clone() token=p.csrf_token.clone() spec state=p.state.clone()/>
                            }.into_any(),
                        }
                    }
                    Err(error) => view! { <h1>"Add a credential"</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn KindChooser(team: String, forms: Vec<FormSpec>) -> impl IntoView {
    view! {
        <h2>"Which cloud?"</h2>
        <ul class="card-list" data-testid="credential-kinds">
            {forms.into_iter().map(|f| {
                let mut href = format!("/teams/{team}/credentials/new?kind={}", f.kind);
                if let Some(v) = &f.variant {
                    href.push_str(&format!("&variant={v}"));
                }
                view! {
                    <li class="panel card">
                        <h3><a href=href>{f.title.clone()}</a></h3>
                        <p class="muted small">{f.intro.clone()}</p>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// Errors above a form: how many fields to fix, and that typed secrets were cleared.
#[component]
fn ErrorSummary(state: FormState) -> impl IntoView {
    (!state.errors.is_empty()).then(|| {
        let n = state.errors.len();
        view! {
            <div class="alert alert-error" role="alert" data-testid="form-errors">
                <strong>{if n == 1 { "One field needs fixing.".to_string() } else { format!("{n} fields need fixing.") }}</strong>
                " Each says what is wrong below."
                {state.secrets_cleared.then(|| view! {
                    " " <span data-testid="secrets-cleared">"The secrets you typed were cleared for safety: type them again."</span>
                })}
            </div>
        }
    })
}

/// One labelled input with its help and, next to it, its error.
#[component]
fn FormField(
    spec: FieldSpec,
    value: String,
    error: Option<String>,
    #[prop(optional)] prefix: &'static str,
) -> impl IntoView {
    let id = format!("{prefix}f-{}", spec.name);
    let help_id = format!("{id}-help");
    let error_id = format!("{id}-error");
    let described = if error.is_some() {
        format!("{error_id} {help_id}")
    } else {
        help_id.clone()
    };
    let invalid = error.is_some().then_some("true");
    let value = if spec.secret { String::new() } else { value };
    let input = if spec.multiline {
        view! {
            <textarea id=id.clone() name=spec.name.clone() rows="6" required spellcheck="false" autocomplete="off"
                placeholder=spec.placeholder.clone() aria-describedby=described aria-invalid=invalid>{textarea_text(&value)}</textarea>
        }.into_any()
    } else {
        view! {
            <input id=id.clone() name=spec.name.clone() required
                type=if spec.secret { "password" } else { "text" }
                autocomplete=if spec.secret { "new-password" } else { "off" } spellcheck="false"
                placeholder=spec.placeholder.clone() value=value aria-describedby=described aria-invalid=invalid/>
        }.into_any()
    };
    view! {
        <label for=id>{spec.label.clone()}{spec.secret.then(|| view! { " " <span class="badge">"secret"</span> })}</label>
        {input}
        {error.map(|e| view! { <p class="field-error" id=error_id>{e}</p> })}
        <p class="help" id=help_id>{spec.help.clone()}</p>
    }
}

#[component]
fn CredentialForm(team: String, token: String, spec: FormSpec, state: FormState) -> impl IntoView {
    let action = format!("/teams/{team}/credentials");
    let name = state.values.get("name").cloned().unwrap_or_default();
    let name_spec = FieldSpec {
        name: "name".into(),
        label: "Name".into(),
        secret: false,
        multiline: false,
        help: "How your team tells its credentials apart, e.g. aws-us-east: letters, digits, '-', '_' or '.'.".into(),
        placeholder: String::new(),
        default: String::new(),
    };
    let name_error = state.error("name");
    let kind_error = state.error("kind");
    let first_time = state.values.is_empty();
    view! {
        <h2>{spec.title.clone()}</h2>
        <p class="muted">{spec.intro.clone()}</p>
        <ErrorSummary state=state.clone()/>
        {kind_error.map(|e| view! { <p class="alert alert-error">{e}</p> })}
        <form method="post" action=action class="panel form" data-testid="credential-form">
            <input type="hidden" name="csrf_token" value=token/>
            <input type="hidden" name="kind" value=spec.kind.clone()/>
            <input type="hidden" name="variant" value=spec.variant.clone().unwrap_or_default()/>
            <FormField spec=name_spec value=name error=name_error/>
            {spec.fields.iter().cloned().map(|f| {
                let value = state.values.get(&f.name).cloned()
                    .unwrap_or_else(|| if first_time { f.default.clone() } else { String::new() });
                let error = state.error(&f.name);
                view! { <FormField spec=f value error/> }
            }).collect_view()}
            <button type="submit" class="button">"Add credential"</button>
        </form>
    }
}

/// `/teams/{name}/credentials/{id}`.
#[component]
pub fn CredentialDetailPage() -> impl IntoView {
    let params = use_params_map();
    let team = move || params.read().get("name").unwrap_or_default();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|i| i.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let page = Resource::new(
        move || (team(), id()),
        |(team, id)| get_credential(team, id),
    );
    view! {
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => {
                        let c = p.credential.clone();
                        let base = format!("/teams/{}/credentials/{}", c.team, c.id);
                        let team_href = format!("/teams/{}", c.team);
                        let state_for = |form: &str| if p.form.as_deref() == Some(form) { p.state.clone() } else { FormState::default() };
                        let live = c.revoked_at.is_none();
                        view! {
                            <Title text=format!("{} · {}", c.name, c.team)/>
                            <div class="page-head">
                                <div>
                                    <h1>{c.name.clone()}</h1>
                                    <p class="lede">{format!("{} credential of team ", kind_label(&c.kind))}<a href=team_href.clone()>{c.team.clone()}</a></p>
                                </div>
                            </div>
                            {p.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
                            {c.revoked_at.clone().map(|t| view! {
                                <p class="alert alert-error" data-testid="revoked">
                                    {format!("Revoked by {} on {}. {}", c.revoked_by.clone().unwrap_or_default(), when(&t),
                                        if c.secret_kept {
                                            "No machine starts with it again; its secret is kept only to delete the machines started with it, and deleted with the last one."
                                        } else {
                                            "Its secret is deleted; no hook gets it any more."
                                        })}
                                </p>
                            })}
                            {c.unreadable.clone().map(|why| view! {
                                <p class="alert alert-error" data-testid="unreadable">
                                    {format!("The server cannot read this credential: {why}. Ask an admin about the server's keys, or give it a new secret below.")}
                                </p>
                            })}
                            <section class="section panel" aria-labelledby="cred-facts">
                                <h2 id="cred-facts" class="visually-hidden">"Details"</h2>
                                <dl class="facts" data-testid="credential-facts">
                                    <div><dt>"Kind"</dt><dd>{kind_label(&c.kind)}{c.variant.clone().map(|v| format!(" ({})", v.replace('_', " ")))}</dd></div>
                                    {c.fields.iter().cloned().map(|(l, v)| view! { <div><dt>{l}</dt><dd class="break">{v}</dd></div> }).collect_view()}
                                    <div><dt>"Secret ends in"</dt><dd><code>{format!("…{}", c.last4)}</code></dd></div>
                                    <div><dt>"Fingerprint"</dt><dd><code>{c.fingerprint.clone()}</code></dd></div>
                                    <div><dt>"Added"</dt><dd>{format!("{} by {}", when(&c.created_at), c.created_by)}</dd></div>
                                    <div><dt>"Secret replaced"</dt><dd>{c.secret_replaced_at.as_deref().map(when).unwrap_or_else(|| "never".into())}</dd></div>
                                    <div><dt>"Last used by a hook"</dt><dd>{c.last_used_at.as_deref().map(when).unwrap_or_else(|| "never".into())}</dd></div>
                                    <div><dt>"Used by pools"</dt><dd>{if c.pools.is_empty() { "none yet".to_string() } else { c.pools.join(", ") }}</dd></div>
                                </dl>
                            </section>
                            {live.then(|| view! {
                                <RenameForm action=format!("{base}/rename") token=p.csrf_token.clone() current=c.name.clone() state=state_for("rename")/>
                                <ReplaceForm action=format!("{base}/secret") token=p.csrf_token.clone() spec=p.replace.clone() state=state_for("secret")/>
                                <RevokeForm action=format!("{base}/revoke") token=p.csrf_token.clone() pools=c.pools.clone() state=state_for("revoke")/>
                            })}
                            <p><a href=team_href>{format!("← Back to team {}", c.team)}</a></p>
                        }.into_any()
                    }
                    Err(error) => view! { <h1>"Credential"</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RenameForm(action: String, token: String, current: String, state: FormState) -> impl IntoView {
    let value = state.values.get("name").cloned().unwrap_or(current);
    let spec = FieldSpec {
        name: "name".into(),
        label: "New name".into(),
        secret: false,
        multiline: false,
        help: "Letters, digits, '-', '_' or '.'; unique among your team's credentials.".into(),
        placeholder: String::new(),
        default: String::new(),
    };
    let error = state.error("name");
    view! {
        <section class="section" aria-labelledby="rename-head">
            <h2 id="rename-head">"Rename"</h2>
            <ErrorSummary state=state.clone()/>
            <form method="post" action=action class="panel form" data-testid="rename-form">
                <input type="hidden" name="csrf_token" value=token/>
                <FormField spec value error prefix="rename-"/>
                <button type="submit" class="button button-secondary">"Rename"</button>
            </form>
        </section>
    }
}

#[component]
fn ReplaceForm(action: String, token: String, spec: FormSpec, state: FormState) -> impl IntoView {
    (!spec.fields.is_empty()).then(|| view! {
        <section class="section" aria-labelledby="secret-head">
            <h2 id="secret-head">"Replace the secret"</h2>
            <p class="muted">"After a key rotation at your cloud: the old secret is deleted, hooks get the new one from their next start."</p>
            <ErrorSummary state=state.clone()/>
            <form method="post" action=action class="panel form" data-testid="replace-form">
                <input type="hidden" name="csrf_token" value=token/>
                {spec.fields.iter().cloned().map(|f| {
                    let error = state.error(&f.name);
                    view! { <FormField spec=f value=String::new() error prefix="replace-"/> }
                }).collect_view()}
                <button type="submit" class="button button-secondary">"Replace the secret"</button>
            </form>
        </section>
    })
}

#[component]
fn RevokeForm(
    action: String,
    token: String,
    pools: Vec<String>,
    state: FormState,
) -> impl IntoView {
    let error = state.error("confirm");
    let consequence = if pools.is_empty() {
        "No pool uses it.".to_string()
    } else {
        format!(
            "Pools using it ({}) are paused: no new machines start; running ones stay until deleted, and the secret is kept only for deleting them.",
            pools.join(", ")
        )
    };
    view! {
        <section class="section" aria-labelledby="revoke-head">
            <h2 id="revoke-head">"Revoke"</h2>
            <p class="muted">{format!("No machine starts with it again. {consequence} To change the secret only, replace it above.")}</p>
            <form method="post" action=action class="panel form" data-testid="revoke-form">
                <input type="hidden" name="csrf_token" value=token/>
                <label class="checkbox" for="revoke-confirm">
                    <input type="checkbox" id="revoke-confirm" name="confirm" value="yes" required
                        aria-describedby=error.as_ref().map(|_| "revoke-error") aria-invalid=error.as_ref().map(|_| "true")/>
                    " I understand this cannot be undone"
                </label>
                {error.map(|e| view! { <p class="field-error" id="revoke-error">{e}</p> })}
                <button type="submit" class="button button-danger">"Revoke this credential"</button>
            </form>
        </section>
    }
}
