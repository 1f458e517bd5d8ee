//! Pool requests: the request form (with its live cost estimate), a request's page with its
//! timeline and the decisions, the admins' approval queue and price list.
//!
//! Forms are plain HTML posts, so every page works before the WebAssembly loads; once it has,
//! the cost estimate follows what is typed, and choosing an instance type fills in its
//! price from the admins' list (a "Preview the cost" button does both without JavaScript).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::credentials::FieldSpec;
use crate::api::requests::*;
use crate::components::notice::ErrorNotice;
use crate::error::FieldError;
use crate::format::textarea_text;
use crate::pages::routing::BuildPreview;

pub(crate) fn error_of(errors: &[FieldError], field: &str) -> Option<String> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.clone())
}

pub(crate) fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t.to_string(),
    }
}

/// How many fields need fixing, above a form.
#[component]
pub(crate) fn Problems(errors: Vec<FieldError>) -> impl IntoView {
    (!errors.is_empty()).then(|| {
        let n = errors.len();
        view! {
            <div class="alert alert-error" role="alert" data-testid="form-errors">
                <strong>{if n == 1 { "One field needs fixing.".to_string() } else { format!("{n} fields need fixing.") }}</strong>
                " Each says what is wrong beside it."
                {errors.iter().filter(|e| e.field == "approve" || e.field == "change").map(|e| view! { <p>{e.message.clone()}</p> }).collect_view()}
            </div>
        }
    })
}

/// A labelled text input whose value lives in `values`, its error beside it.
#[component]
fn Field(
    spec: FieldSpec,
    values: RwSignal<FormValues>,
    errors: Vec<FieldError>,
    #[prop(optional)] number: bool,
) -> impl IntoView {
    let id = format!("r-{}", spec.name);
    let help_id = format!("{id}-help");
    let error = error_of(&errors, &spec.name);
    let error_id = format!("{id}-error");
    let described = if error.is_some() {
        format!("{error_id} {help_id}")
    } else {
        help_id.clone()
    };
    let name = spec.name.clone();
    let initial = values.with_untracked(|v| v.get(&name).cloned().unwrap_or_default());
    let current = move || values.with(|v| v.get(&name).cloned().unwrap_or_default());
    view! {
        <label for=id.clone()>{spec.label.clone()}</label>
        <input id=id name=spec.name.clone() type="text" inputmode=number.then_some("decimal")
            autocomplete="off" spellcheck="false" placeholder=spec.placeholder.clone()
            value=initial prop:value=current
            aria-describedby=described aria-invalid=error.is_some().then_some("true")/>
        {error.map(|e| view! { <p class="field-error" id=error_id>{e}</p> })}
        <p class="help" id=help_id>{spec.help.clone()}</p>
    }
}

fn spec(name: &str, label: &str, help: &str, placeholder: &str) -> FieldSpec {
    param(name, label, help, placeholder, "")
}

/// The monthly estimate of what is in the form, live once hydrated.
#[component]
fn EstimateBox(values: RwSignal<FormValues>, arches: Signal<usize>) -> impl IntoView {
    let estimate = move || {
        let mut e = estimate(&values.with(budget_of));
        let n = arches.get().max(1) as f64;
        e.floor *= n;
        e.variable *= n;
        e.total *= n;
        e.unserved_hours *= n;
        e
    };
    view! {
        <aside class="estimate panel" aria-live="polite" data-testid="estimate">
            <h3>"Monthly cost estimate"</h3>
            {move || {
                let e = estimate();
                let class = if e.fits() { "estimate-verdict fits" } else { "estimate-verdict exceeds" };
                view! {
                    <p class="estimate-total">{money(e.total)}</p>
                    <dl class="estimate-parts">
                        <div><dt>"Kept ready, all month"</dt><dd>{money(e.floor)}</dd></div>
                        <div><dt>"Builds beyond them"</dt><dd>{money(e.variable)}</dd></div>
                    </dl>
                    <p class=class data-testid="estimate-verdict">{e.verdict()}</p>
                    {(e.unserved_hours > 0.0).then(|| view! {
                        <p class="small muted">{format!("{:.0} build hours a month would wait: more than max machines can run.", e.unserved_hours)}</p>
                    })}
                }
            }}
            <p class="small muted">"Preallocated: machines kept ready × 730 h × price, plus the build hours beyond them. On demand: the build hours × price."</p>
        </aside>
    }
}

/// `/teams/{name}/requests/new`: choose a credential, then describe the pool.
#[component]
pub fn NewRequestPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let team = move || params.read().get("name").unwrap_or_default();
    let key = move || {
        let q = query.read();
        (
            team(),
            q.get("credential").and_then(|c| c.parse::<i32>().ok()),
            q.get("change").filter(|c| !c.is_empty()),
        )
    };
    let page = Resource::new(key, |(team, credential, change)| {
        get_request_form(team, credential, change)
    });
    view! {
        <Title text=move || format!("Request a pool · {}", team())/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <RequestFormBody p/> }.into_any(),
                    Err(error) => view! { <h1>"Request a pool"</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RequestFormBody(p: RequestFormPage) -> impl IntoView {
    let team_href = format!("/teams/{}", p.team);
    let title = match &p.change {
        Some(pool) => format!("Change pool {pool}"),
        None => "Request a pool".to_string(),
    };
    let lede = match &p.change {
        Some(_) => {
            "Ask for other limits or another budget; an admin approves the change like a request."
                .to_string()
        }
        None => format!(
            "Builders for team {}: an admin reviews the request, and once approved the pool starts.",
            p.team
        ),
    };
    let head = view! {
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="lede">{lede}" "<a href=team_href.clone()>{format!("Back to {}", p.team)}</a></p>
            </div>
        </div>
    };
    let Some(credential) = p.credential.clone() else {
        return view! { {head} <ChooseCredential p/> }.into_any();
    };
    let values = RwSignal::new(p.values.clone());
    let price_touched = RwSignal::new(values.with_untracked(|v| v.contains_key("price_per_hour")));
    let prices = p.prices.clone();
    let (kind, region) = (credential.kind.clone(), credential.region.clone());
    let on_change = move |ev: leptos::ev::Event| {
        let target = event_target::<leptos::web_sys::Element>(&ev);
        let Some(name) = target.get_attribute("name") else {
            return;
        };
        let value = if target.get_attribute("type").as_deref() == Some("checkbox") {
            if event_target_checked(&ev) {
                "on".to_string()
            } else {
                String::new()
            }
        } else {
            event_target_value(&ev)
        };
        if name == "price_per_hour" {
            price_touched.set(true);
        }
        let list = (name == "instance_type" || name == "flavor")
            .then(|| list_price(&prices, &kind, &region, &value))
            .flatten();
        values.update(|v| {
            v.insert(name.clone(), value);
            if let (Some(price), false) = (list, price_touched.get_untracked()) {
                v.insert("price_per_hour".into(), price.to_string());
            }
        });
    };
    let arches = Signal::derive(move || {
        values.with(|v| {
            ARCHES
                .iter()
                .filter(|a| v.get(&format!("arch_{a}")).is_some_and(|x| !x.is_empty()))
                .count()
        })
    });
    let is_new = p.change.is_none();
    let errors = p.errors.clone();
    let checked =
        move |k: &str, v: &str| values.with_untracked(|m| m.get(k).map(String::as_str) == Some(v));
    let action = format!("/teams/{}/requests", p.team);
    let scope_value =
        textarea_text(&values.with_untracked(|v| v.get("scope").cloned().unwrap_or_default()));
    let justification = textarea_text(
        &values.with_untracked(|v| v.get("justification").cloned().unwrap_or_default()),
    );
    let builds_value =
        textarea_text(&values.with_untracked(|v| v.get("builds").cloned().unwrap_or_default()));
    let preview_ask = {
        let team = p.team.clone();
        Signal::derive(move || {
            values.with(|v| {
                let get = |k: &str| v.get(k).cloned().unwrap_or_default();
                crate::api::routing::PreviewAsk {
                    team: team.clone(),
                    builds: get("builds"),
                    scope: get("scope"),
                    pool_kind: get("pool_kind"),
                    budget: get("budget"),
                    name: get("name"),
                }
            })
        })
    };
    view! {
        {head}
        <p class="muted">{format!("On credential {} ({}{}). ", credential.name, crate::api::credentials::kind_label(&credential.kind),
            if credential.region.is_empty() { String::new() } else { format!(", {}", credential.region) })}
            {is_new.then(|| view! { <a href=format!("/teams/{}/requests/new", p.team)>"Use another credential"</a> })}
        </p>
        {p.preview.then(|| view! { <p class="alert alert-info" role="status" data-testid="preview">"The estimate below is for what you typed. Nothing is submitted yet."</p> })}
        <Problems errors=errors.clone()/>
        <form method="post" action=action class="request-form" data-testid="request-form" on:input=on_change.clone() on:change=on_change>
            <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
            <input type="hidden" name="credential" value=credential.id.to_string()/>
            <input type="hidden" name="change" value=p.change.clone().unwrap_or_default()/>
            {is_new.then(|| view! {
                <fieldset class="panel form">
                    <legend>"The pool"</legend>
                    <Field spec=spec("name", "Name", "Lower-case letters, digits and '-'; the pools are named <name>-<arch>.", "llvm-builders") values errors=errors.clone()/>
                    <fieldset class="choice" aria-describedby="pool-kind-help">
                        <legend>"Who builds on it"</legend>
                        <label><input type="radio" name="pool_kind" value="dedicated" checked=checked("pool_kind", "dedicated")/>
                            " Dedicated: only your team's builds, paid from your team's account"</label>
                        <label><input type="radio" name="pool_kind" value="community" checked=checked("pool_kind", "community")/>
                            " Community: everyone's builds; your team sponsors it"</label>
                        {error_of(&errors, "pool_kind").map(|e| view! { <p class="field-error">{e}</p> })}
                        <p class="help" id="pool-kind-help">"Builds reach a dedicated pool through your team's tag, which the routing scope below adds to them."</p>
                    </fieldset>
                    <fieldset class="choice" aria-describedby="arches-help">
                        <legend>"Architectures"</legend>
                        {ARCHES.iter().map(|a| {
                            let name = format!("arch_{a}");
                            view! { <label><input type="checkbox" name=name.clone() value="on" checked=checked(&name, "on")/>{format!(" {a}")}</label> }
                        }).collect_view()}
                        {error_of(&errors, "arches").map(|e| view! { <p class="field-error">{e}</p> })}
                        <p class="help" id="arches-help">"One pool per architecture; x86_64 also builds noarch packages."</p>
                    </fieldset>
                </fieldset>
            })}
            {(is_new && !p.params.is_empty()).then(|| view! {
                <fieldset class="panel form">
                    <legend>"Cloud parameters"</legend>
                    <p class="help">"What the spawner needs to start a builder. Give an image for each ticked architecture only."</p>
                    {p.params.clone().into_iter().map(|f| view! { <Field spec=f values errors=errors.clone()/> }).collect_view()}
                </fieldset>
            })}
            <div class="budget-row">
                <fieldset class="panel form">
                    <legend>"Budget"</legend>
                    <fieldset class="choice">
                        <legend>"Builders"</legend>
                        <label><input type="radio" name="budget" value="on_demand" checked=checked("budget", "on_demand")/>
                            " On demand: nothing runs while idle; each build waits 2–3 minutes for its machine to boot"</label>
                        <label><input type="radio" name="budget" value="preallocated" checked=checked("budget", "preallocated")/>
                            " Preallocated: machines kept ready, paid while idle; builds start at once"</label>
                        {error_of(&errors, "budget").map(|e| view! { <p class="field-error">{e}</p> })}
                    </fieldset>
                    <Field spec=spec("prealloc", "Machines kept ready (preallocated)", "Per architecture.", "1") values errors=errors.clone() number=true/>
                    <Field spec=spec("max", "Most machines at once", "Per architecture; builds beyond it wait.", "4") values errors=errors.clone() number=true/>
                    <Field spec=spec("price_per_hour", "Price per machine-hour (USD)", "Filled in from the admins' price list where it knows the instance type; change it if your rate differs.", "0.17") values errors=errors.clone() number=true/>
                    <Field spec=spec("monthly_cap", "Monthly cap (optional, USD)", "No new machine starts once the month's cost reaches it; a warning shows at 80 %.", "") values errors=errors.clone() number=true/>
                    <Field spec=spec("build_hours", "Expected build hours a month", "Per architecture, for the estimate only.", "100") values errors=errors.clone() number=true/>
                </fieldset>
                <EstimateBox values arches=if is_new { arches } else { Signal::derive(|| 1) }/>
            </div>
            {is_new.then(|| view! {
                <fieldset class="panel form">
                    <legend>"Routing scope"</legend>
                    <label for="r-scope">"Builds this pool serves"</label>
                    <textarea id="r-scope" name="scope" rows="3" spellcheck="false" aria-describedby="r-scope-help"
                        aria-invalid=error_of(&errors, "scope").is_some().then_some("true")>{scope_value}</textarea>
                    {error_of(&errors, "scope").map(|e| view! { <p class="field-error" id="r-scope-error">{e}</p> })}
                    <p class="help" id="r-scope-help">"One pattern per line, matched against owner/project/chroot/package from the start, e.g. @team/.* for your group's projects, or @team/llvm/.*x86_64/clang. A preallocated community pool serves every build and needs none."</p>
                    <label for="r-builds">"Where would my builds go? (optional)"</label>
                    <textarea id="r-builds" name="builds" rows="3" spellcheck="false" aria-describedby="r-builds-help">{builds_value}</textarea>
                    <p class="help" id="r-builds-help">"Your projects' builds, one per line as owner/project/chroot/package: each is shown with the tags it would get and the pool that would take it, this pool counted as approved. Preview updates it."</p>
                    <BuildPreview ask=preview_ask/>
                </fieldset>
            })}
            <fieldset class="panel form">
                <legend>"Why"</legend>
                <label for="r-justification">"Justification"</label>
                <textarea id="r-justification" name="justification" rows="4" aria-describedby="r-justification-help"
                    aria-invalid=error_of(&errors, "justification").is_some().then_some("true")>{justification}</textarea>
                {error_of(&errors, "justification").map(|e| view! { <p class="field-error">{e}</p> })}
                <p class="help" id="r-justification-help">"What the builders are for, so an admin can decide."</p>
                <div class="button-row">
                    <button type="submit" name="action" value="preview" class="button button-secondary">"Preview the cost"</button>
                    <button type="submit" name="action" value="submit" class="button">"Submit the request"</button>
                </div>
            </fieldset>
        </form>
    }.into_any()
}

#[component]
fn ChooseCredential(p: RequestFormPage) -> impl IntoView {
    if p.credentials.is_empty() {
        return view! {
            <div class="panel empty-state" data-testid="no-credentials">
                <p>"A pool runs on one of your team's cloud credentials, and your team has none yet. "
                    <a href=format!("/teams/{}/credentials/new", p.team)>"Add a credential"</a>", then come back."</p>
            </div>
        }.into_any();
    }
    view! {
        <h2>"Which account pays?"</h2>
        <ul class="card-list" data-testid="credential-choices">
            {p.credentials.iter().map(|c| view! {
                <li class="panel card">
                    <h3><a href=format!("/teams/{}/requests/new?credential={}", p.team, c.id)>{c.name.clone()}</a></h3>
                    <p class="muted small">{format!("{}{}", crate::api::credentials::kind_label(&c.kind), if c.region.is_empty() { String::new() } else { format!(" · {}", c.region) })}</p>
                </li>
            }).collect_view()}
        </ul>
    }.into_any()
}

fn state_badge(state: &str) -> impl IntoView + use<> {
    let class = match state {
        "approved" => "badge badge-active",
        "submitted" => "badge badge-warning",
        _ => "badge badge-retired",
    };
    view! { <span class=class data-testid="request-state">{state.to_string()}</span> }
}

/// What a request asks for, as facts.
#[component]
fn RequestFacts(r: RequestView) -> impl IntoView {
    let b = r.budget.clone();
    let budget = if b.choice == "preallocated" {
        format!("preallocated: {} kept ready, at most {}", b.prealloc, b.max)
    } else {
        format!("on demand, at most {}", b.max)
    };
    view! {
        <dl class="facts" data-testid="request-facts">
            <div><dt>"Team"</dt><dd><a href=format!("/teams/{}", r.team)>{r.team.clone()}</a></dd></div>
            <div><dt>"Kind"</dt><dd>{format!("{}{}", r.pool_kind, if r.purpose == "change" { " (a change)" } else { "" })}</dd></div>
            <div><dt>"Credential"</dt><dd>{r.credential.clone().unwrap_or_else(|| "—".into())}</dd></div>
            <div><dt>"Architectures"</dt><dd>{r.arches.join(", ")}</dd></div>
            <div><dt>"Builders"</dt><dd>{format!("{budget} (per architecture)")}</dd></div>
            <div><dt>"Price"</dt><dd>{format!("{} per machine-hour", money(b.price_per_hour))}</dd></div>
            <div><dt>"Monthly cap"</dt><dd>{b.monthly_cap.map(money).unwrap_or_else(|| "none".into())}</dd></div>
            <div><dt>"Estimate"</dt><dd data-testid="request-estimate">{format!("{} a month, {}", money(r.estimate.total), r.estimate.verdict())}</dd></div>
            {r.params.iter().cloned().map(|(l, v)| view! { <div><dt>{l}</dt><dd class="break">{v}</dd></div> }).collect_view()}
        </dl>
        {(!r.scope.is_empty()).then(|| view! {
            <p><strong>"Routing scope: "</strong>{r.scope.iter().map(|s| view! { <code class="scope">{s.clone()}</code>" " }).collect_view()}</p>
        })}
        <p><strong>"Justification: "</strong>{r.justification.clone()}</p>
    }
}

/// `/requests/{id}`.
#[component]
pub fn RequestDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|i| i.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let page = Resource::new(id, get_request);
    view! {
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <RequestBody p/> }.into_any(),
                    Err(error) => view! { <h1>"Request"</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RequestBody(p: RequestPage) -> impl IntoView {
    let r = p.request.clone();
    let base = format!("/requests/{}", r.id);
    let limit = |k: &str| p.limits.get(k).cloned().unwrap_or_default();
    let err = |k: &str| error_of(&p.errors, k);
    let reason_error = err("reason");
    view! {
        <Title text=format!("Request #{} · {}", r.id, r.name)/>
        <div class="page-head">
            <div>
                <h1>{format!("Request #{}: {}", r.id, r.name)}" "{state_badge(&r.state)}</h1>
                <p class="lede">{format!("{} by {} on {}", if r.purpose == "change" { "Change requested" } else { "Requested" }, r.created_by, when(&r.created_at))}</p>
            </div>
        </div>
        {p.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
        <Problems errors=p.errors.clone()/>
        {(!r.warnings.is_empty()).then(|| view! {
            <div class="alert alert-warning" data-testid="warnings">
                <strong>"Before approving:"</strong>
                <ul>{r.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}</ul>
            </div>
        })}
        <section class="section panel"><RequestFacts r=r.clone()/></section>
        {(!r.pools.is_empty()).then(|| view! { <p data-testid="request-pools">"Pools: "{r.pools.join(", ")}</p> })}
        <section class="section" aria-labelledby="timeline-head">
            <h2 id="timeline-head">"Timeline"</h2>
            <ol class="timeline" data-testid="timeline">
                {r.timeline.iter().map(|e| view! {
                    <li>
                        <span class="timeline-when">{when(&e.at)}</span>" "
                        <strong>{e.action.clone()}</strong>{format!(" by {}", e.actor)}
                        {e.note.clone().map(|n| view! { <span class="muted">{format!(": {n}")}</span> })}
                    </li>
                }).collect_view()}
            </ol>
        </section>
        {p.can_decide.then(|| view! {
            <section class="section" aria-labelledby="decide-head">
                <h2 id="decide-head">"Decide"</h2>
                <div class="decide-row">
                    <form method="post" action=format!("{base}/approve") class="panel form" data-testid="approve-form">
                        <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                        <h3>"Approve"</h3>
                        <p class="help">"Adjust the limits if needed; each pool gets them."</p>
                        {[("max", "Most machines at once"), ("max_prealloc", "Machines kept ready"), ("max_starting", "Machines starting at once"), ("priority", "Priority of copr_builder")].into_iter().map(|(k, label)| {
                            let id = format!("limit-{k}");
                            let e = err(k);
                            view! {
                                <label for=id.clone()>{label}</label>
                                <input id=id name=k value=limit(k) inputmode="numeric" aria-invalid=e.is_some().then_some("true")/>
                                {e.map(|e| view! { <p class="field-error">{e}</p> })}
                            }
                        }).collect_view()}
                        <button type="submit" class="button">"Approve and create the pools"</button>
                    </form>
                    <form method="post" action=format!("{base}/reject") class="panel form" data-testid="reject-form">
                        <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                        <h3>"Reject"</h3>
                        <label for="reject-reason">"Reason (the team reads it)"</label>
                        <textarea id="reject-reason" name="reason" rows="3" required aria-invalid=reason_error.is_some().then_some("true")>{textarea_text(&limit("reason"))}</textarea>
                        {reason_error.map(|e| view! { <p class="field-error">{e}</p> })}
                        <button type="submit" class="button button-danger">"Reject"</button>
                    </form>
                </div>
            </section>
        })}
        {p.can_withdraw.then(|| view! {
            <form method="post" action=format!("{base}/withdraw") class="inline-form" data-testid="withdraw-form">
                <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                <button type="submit" class="button button-secondary">"Withdraw this request"</button>
            </form>
        })}
    }
}

/// A list of requests, as a table.
#[component]
pub fn RequestTable(
    requests: Vec<RequestView>,
    #[prop(optional)] show_team: bool,
) -> impl IntoView {
    view! {
        <div class="table-wrap" role="region" aria-label="Requests" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="request-table">
                <thead><tr>
                    <th scope="col">"Request"</th>
                    {show_team.then(|| view! { <th scope="col">"Team"</th> })}
                    <th scope="col">"Kind"</th><th scope="col">"State"</th>
                    <th scope="col" class="num">"Estimate"</th><th scope="col">"Submitted"</th>
                </tr></thead>
                <tbody>
                    {requests.into_iter().map(|r| view! {
                        <tr>
                            <th scope="row"><a href=format!("/requests/{}", r.id)>{format!("#{} {}", r.id, r.name)}</a></th>
                            {show_team.then(|| view! { <td data-label="Team">{r.team.clone()}</td> })}
                            <td data-label="Kind">{format!("{}{}", r.pool_kind, if r.purpose == "change" { ", change" } else { "" })}</td>
                            <td data-label="State">{state_badge(&r.state)}</td>
                            <td data-label="Estimate" class="num">{money(r.estimate.total)}</td>
                            <td data-label="Submitted" class="nowrap">{when(&r.created_at)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// `/admin/requests`: what waits for a decision, oldest first.
#[component]
pub fn RequestQueuePage() -> impl IntoView {
    let queue = Resource::new(|| (), |_| get_request_queue());
    view! {
        <Title text="Pool requests"/>
        <div class="page-head"><div>
            <h1>"Pool requests"</h1>
            <p class="lede">"Requests waiting for a decision, oldest first, with what they cost and what to check. "<a href="/admin/prices">"Price list"</a></p>
        </div></div>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match queue.await {
                    Ok(q) => view! {
                        {if q.pending.is_empty() {
                            view! { <p class="panel empty-state" data-testid="queue-empty">"Nothing waits: every request has been decided. Teams ask for pools from their team page."</p> }.into_any()
                        } else {
                            view! {
                                <ul class="queue" data-testid="queue">
                                    {q.pending.into_iter().map(|r| view! {
                                        <li class="panel">
                                            <h2><a href=format!("/requests/{}", r.id)>{format!("#{} {} ({})", r.id, r.name, r.team)}</a></h2>
                                            <p>{format!("{} {}, {}: {} a month, {}", r.pool_kind, if r.purpose == "change" { "change" } else { "pool" },
                                                r.arches.join(", "), money(r.estimate.total), r.estimate.verdict())}</p>
                                            {(!r.scope.is_empty()).then(|| view! { <p class="small">"Scope: "{r.scope.iter().map(|s| view! { <code class="scope">{s.clone()}</code>" " }).collect_view()}</p> })}
                                            {(!r.warnings.is_empty()).then(|| view! {
                                                <ul class="warnings">{r.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}</ul>
                                            })}
                                            <p class="small muted">{format!("Submitted by {} on {}", r.created_by, when(&r.created_at))}</p>
                                        </li>
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }}
                        {(!q.decided.is_empty()).then(|| view! {
                            <section class="section"><h2>"Recently decided"</h2><RequestTable requests=q.decided show_team=true/></section>
                        })}
                    }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// `/admin/prices`: what a machine costs per hour, to pre-fill request forms.
#[component]
pub fn PriceListPage() -> impl IntoView {
    let page = Resource::new(|| (), |_| get_price_list());
    view! {
        <Title text="Price list"/>
        <div class="page-head"><div>
            <h1>"Price list"</h1>
            <p class="lede">"What one machine costs per hour, by cloud, region and instance type: request forms start from these prices."</p>
        </div></div>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => {
                        let v = |k: &str| p.values.get(k).cloned().unwrap_or_default();
                        let e = |k: &str| error_of(&p.errors, k);
                        view! {
                            {p.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
                            <Problems errors=p.errors.clone()/>
                            {if p.entries.is_empty() {
                                view! { <p class="panel empty-state" data-testid="no-prices">"No prices yet: members then type the price themselves. Add the instance types your teams use below."</p> }.into_any()
                            } else {
                                view! {
                                    <div class="table-wrap" role="region" aria-label="Prices" tabindex="0">
                                        <table class="data-table stack-on-phone" data-testid="price-table">
                                            <thead><tr><th scope="col">"Cloud"</th><th scope="col">"Region"</th><th scope="col">"Instance type"</th><th scope="col" class="num">"Per hour"</th><th scope="col">"Changed"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                                            <tbody>
                                                {p.entries.iter().map(|x| view! {
                                                    <tr>
                                                        <th scope="row">{crate::api::credentials::kind_label(&x.kind)}</th>
                                                        <td data-label="Region">{x.region.clone()}</td>
                                                        <td data-label="Instance type">{x.instance_type.clone()}</td>
                                                        <td data-label="Per hour" class="num">{money(x.price_per_hour)}</td>
                                                        <td data-label="Changed" class="nowrap">{format!("{} by {}", when(&x.updated_at), x.updated_by)}</td>
                                                        <td>
                                                            <form method="post" action=format!("/admin/prices/{}/delete", x.id) class="inline-form">
                                                                <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                                                                <button type="submit" class="button button-secondary button-small">{format!("Remove {}", x.instance_type)}</button>
                                                            </form>
                                                        </td>
                                                    </tr>
                                                }).collect_view()}
                                            </tbody>
                                        </table>
                                    </div>
                                }.into_any()
                            }}
                            <form method="post" action="/admin/prices" class="panel form section" data-testid="price-form">
                                <h2>"Add or change a price"</h2>
                                <input type="hidden" name="csrf_token" value=p.csrf_token.clone()/>
                                <label for="price-kind">"Cloud"</label>
                                <select id="price-kind" name="kind">
                                    {["aws", "openstack", "ibmcloud", "libvirt", "local"].into_iter().map(|k| view! {
                                        <option value=k selected=v("kind") == k>{crate::api::credentials::kind_label(k)}</option>
                                    }).collect_view()}
                                </select>
                                {e("kind").map(|m| view! { <p class="field-error">{m}</p> })}
                                {[("region", "Region", "us-east-1"), ("instance_type", "Instance type, flavor or profile", "c7i.xlarge"), ("price_per_hour", "Price per hour (USD)", "0.17")].into_iter().map(|(k, label, ph)| {
                                    let id = format!("price-{k}");
                                    let m = e(k);
                                    view! {
                                        <label for=id.clone()>{label}</label>
                                        <input id=id name=k value=v(k) placeholder=ph aria-invalid=m.is_some().then_some("true")/>
                                        {m.map(|m| view! { <p class="field-error">{m}</p> })}
                                    }
                                }).collect_view()}
                                <button type="submit" class="button">"Save the price"</button>
                            </form>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
