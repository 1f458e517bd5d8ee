//! A pool's page (`/pools/{name}`): what it is (its `pools.yaml`), how it is doing (state,
//! counts, start success and time, charts of its history), its machines, the waiting builds it
//! could serve with why they wait, and for the owning team and admins each machine's address
//! and hook logs. Admins delete machines, pause, drain and retire it from here. Readable
//! without JavaScript; once hydrated it follows its live stream (`/events/pools/{name}`), so a
//! running hook's log grows on screen.

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::charts::{Chart, ChartRange, get_pool_charts};
use crate::api::pools::{MachineView, PoolPage, PoolUpdate, get_pool_page};
use crate::api::tickets::TicketDetail;
use crate::components::charts::RangeLinks;
use crate::components::live::{follow, forget_on_change, hydrated, merge};
use crate::components::notice::ErrorNotice;
use crate::format::{human_duration, percent, urlencode};
use crate::pages::status::{ChartsOf, WaitingTickets, fresh_charts, use_range};

/// The machines whose hook logs are unfolded, kept while the live stream redraws the page.
#[derive(Clone, Copy)]
struct OpenLogs(RwSignal<BTreeSet<i64>>);

#[component]
pub fn PoolDetailPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let range = use_range();
    let hydrated = hydrated();
    let page = Resource::new(name, get_pool_page);
    let charts = Resource::new(
        move || (name(), range.get()),
        |(n, r)| get_pool_charts(n, r),
    );
    let latest = RwSignal::new(None::<PoolPage>);
    let latest_charts = RwSignal::new(None::<(ChartRange, Vec<Chart>)>);
    provide_context(OpenLogs(RwSignal::new(BTreeSet::new())));
    // What the stream brought belongs to the pool it was about.
    forget_on_change(name, move || {
        latest.set(None);
        latest_charts.set(None);
    });
    follow(
        move || {
            format!(
                "/events/pools/{}?range={}",
                urlencode(&name()),
                range.get().as_str()
            )
        },
        hydrated.into(),
        move |mut update: PoolUpdate| {
            if let Some(c) = update.charts.take() {
                latest_charts.set(Some((range.get_untracked(), c)));
            }
            if update != PoolUpdate::default() {
                merge(latest, page, |p| p.apply(update));
            }
        },
    );
    view! {
        <Title text=move || format!("Pool {}", name())/>
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading the pool…"</p> }>
            {move || {
                let current = latest.get();
                Suspend::new(async move {
                    match current.map(Ok).unwrap_or(page.await) {
                        Ok(p) => view! {
                            <PoolBody page=p/>
                            <section aria-labelledby="history-title" class="section">
                                <div class="section-head">
                                    <h2 id="history-title">"History"</h2>
                                    {move || view! { <RangeLinks path=format!("/pools/{}", urlencode(&name())) current=range.get()/> }}
                                </div>
                                <ChartsOf charts latest=fresh_charts(latest_charts, range)/>
                            </section>
                        }.into_any(),
                        Err(error) => view! { <h1>{name()}</h1><ErrorNotice error/> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

#[component]
fn PoolBody(page: PoolPage) -> impl IntoView {
    let s = page.status.clone();
    let name = s.name.clone();
    let back = format!("/pools/{name}");
    let lede = s
        .description
        .clone()
        .unwrap_or_else(|| "A pool of builder machines.".into());
    let facts = [
        ("State", s.state.clone()),
        ("Max", s.max.to_string()),
        ("Up", s.up.to_string()),
        ("Ready", s.ready.to_string()),
        ("Taken", s.taken.to_string()),
        ("Starting", s.starting.to_string()),
        ("Releasing", s.releasing.to_string()),
        (
            "Being deleted",
            (s.delete_requested + s.deleting).to_string(),
        ),
        ("Start success", percent(s.start_success_rate)),
        (
            "Average start",
            s.start_time_avg
                .map(human_duration)
                .unwrap_or_else(|| "–".into()),
        ),
    ];
    let states: Vec<(&str, &str)> = match (s.state.as_str(), page.admin, page.may_pause) {
        ("active", true, _) => vec![
            ("paused", "Pause"),
            ("draining", "Drain"),
            ("retired", "Retire"),
        ],
        ("paused", true, _) => vec![
            ("active", "Resume"),
            ("draining", "Drain"),
            ("retired", "Retire"),
        ],
        ("draining", true, _) => vec![("active", "Resume"), ("retired", "Retire")],
        ("retired", true, _) => vec![("active", "Reactivate")],
        ("active", false, true) => vec![("paused", "Pause")],
        ("paused", false, true) => vec![("active", "Resume")],
        _ => vec![],
    };
    let token = page.csrf_token.clone();
    view! {
        <div class="page-head">
            <div>
                <h1>"Pool " <span class="pool-name">{name.clone()}</span></h1>
                <p class="lede">{lede}</p>
            </div>
        </div>
        {page.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
        {(!page.errors.is_empty()).then(|| view! {
            <div class="alert alert-error" role="alert">{page.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join(" ")}</div>
        })}
        <section aria-labelledby="state-title" class="section">
            <h2 id="state-title">"State"</h2>
            <dl class="facts" data-testid="pool-facts">
                {facts.into_iter().map(|(k, v)| view! { <div><dt>{k}</dt><dd>{v}</dd></div> }).collect_view()}
                {page.owner_team.clone().map(|t| view! { <div><dt>"Team"</dt><dd><a href=format!("/teams/{t}")>{t.clone()}</a></dd></div> })}
            </dl>
            {page.state_reason.clone().map(|r| view! { <p class="small muted state-reason">{r}</p> })}
            {s.cap.clone().map(|c| view! {
                <p class=if c.reached { "cap-note cap-reached" } else { "cap-note cap-warning" }>{c.text}</p>
            })}
            {(!states.is_empty()).then(|| view! {
                <div class="actions" data-testid="pool-actions">
                    {states.into_iter().map(|(state, label)| view! {
                        <form method="post" action=format!("/pools/{}/state", name) class="inline-form">
                            <input type="hidden" name="csrf_token" value=token.clone()/>
                            <input type="hidden" name="state" value=state/>
                            <input type="hidden" name="back" value=back.clone()/>
                            <button type="submit" class="button button-secondary">{label}</button>
                        </form>
                    }).collect_view()}
                </div>
            })}
        </section>
        <section aria-labelledby="machines-title" class="section">
            <h2 id="machines-title">"Machines"</h2>
            <Machines machines=page.machines.clone() private=page.private admin=page.admin pool=name.clone() token=token.clone()/>
        </section>
        <section aria-labelledby="waiting-title" class="section">
            <h2 id="waiting-title">"Waiting builds it could serve"</h2>
            <Waiting tickets=page.waiting.clone()/>
        </section>
        <section aria-labelledby="config-title" class="section">
            <h2 id="config-title">"Configuration"</h2>
            <p class="help">"As " <code>"pools.yaml"</code> " holds it (" <code>"copr-pools pools export"</code> " prints every pool)."</p>
            <pre class="config" data-testid="pool-config" tabindex="0">{page.config_yaml.clone()}</pre>
        </section>
    }
}

#[component]
fn Machines(
    machines: Vec<MachineView>,
    private: bool,
    admin: bool,
    pool: String,
    token: String,
) -> impl IntoView {
    let open_logs = use_context::<OpenLogs>();
    if machines.is_empty() {
        return view! {
            <p class="muted" data-testid="no-machines">
                "No machines right now. An on-demand pool starts one when a build asks for its tags; "
                "a preallocated pool keeps its machines ready once it is active."
            </p>
        }
        .into_any();
    }
    view! {
        <div class="table-wrap" role="region" aria-labelledby="machines-title" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="machine-table">
                <thead><tr>
                    <th scope="col">"Machine"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Ticket"</th>
                    <th scope="col">"Sandbox"</th>
                    <th scope="col" class="num">"Age"</th>
                    <th scope="col" class="num">"Releases"</th>
                    <th scope="col" class="num">"Livecheck failures"</th>
                    {private.then(|| view! { <th scope="col">"Address"</th> })}
                    {admin.then(|| view! { <th scope="col">"Actions"</th> })}
                </tr></thead>
                <tbody>
                    {machines.iter().map(|m| view! {
                        <tr>
                            <th scope="row">{m.name.clone()} <span class="muted small">{format!(" #{}", m.id)}</span></th>
                            <td data-label="State"><span class="badge">{m.state.clone()}</span></td>
                            <td data-label="Ticket">{m.ticket.map(|t| view! { <a href=format!("/api/v1/tickets/{t}")>{format!("#{t}")}</a> })}</td>
                            <td data-label="Sandbox"><code>{m.sandbox.clone().unwrap_or_default()}</code></td>
                            <td class="num" data-label="Age">{human_duration(m.age_secs)}</td>
                            <td class="num" data-label="Releases">{m.releases}</td>
                            <td class="num" data-label="Livecheck failures">{m.livecheck_failures}</td>
                            {private.then(|| view! { <td data-label="Address"><code>{m.data.clone().unwrap_or_default()}</code></td> })}
                            {admin.then(|| view! {
                                <td data-label="Actions">
                                    <form method="post" action=format!("/pools/{}/machines/{}/delete", pool, m.id) class="inline-form">
                                        <input type="hidden" name="csrf_token" value=token.clone()/>
                                        <button type="submit" class="button button-danger button-small" aria-label=format!("Delete machine {}", m.name)>"Delete"</button>
                                    </form>
                                </td>
                            })}
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {private.then(|| view! {
            <h3>"Hook logs"</h3>
            <p class="help">"The end of each hook's log (" <code>"copr-pools resource logs ID --follow"</code> " prints them whole); it grows here while a hook runs."</p>
            {machines.into_iter().map(|m| { let id = m.id; view! {
                <details class="hook-logs" data-testid=format!("logs-{id}")
                    open=open_logs.is_some_and(|o| o.0.with_untracked(|set| set.contains(&id)))
                    on:toggle=move |ev| {
                        let open = event_target::<leptos::web_sys::Element>(&ev).has_attribute("open");
                        if let Some(o) = open_logs {
                            o.0.update(|set| { if open { set.insert(id); } else { set.remove(&id); } });
                        }
                    }>
                    <summary>{format!("{} (#{}): {} log{}", m.name, m.id, m.logs.len(), if m.logs.len() == 1 { "" } else { "s" })}</summary>
                    {if m.logs.is_empty() {
                        view! { <p class="muted small">"No hook has written a log for this machine yet."</p> }.into_any()
                    } else {
                        m.logs.into_iter().map(|l| view! {
                            <h4>{l.kind.clone()} {l.truncated.then_some(" (its end)")}</h4>
                            <pre class="log" tabindex="0">{l.text}</pre>
                        }).collect_view().into_any()
                    }}
                </details>
            }}).collect_view()}
        })}
    }
    .into_any()
}

#[component]
fn Waiting(tickets: Vec<TicketDetail>) -> impl IntoView {
    if tickets.is_empty() {
        return view! { <p class="muted" data-testid="no-waiting">"No build waits for this pool."</p> }
            .into_any();
    }
    view! { <WaitingTickets tickets label="Waiting builds it could serve" testid="pool-waiting"/> }
        .into_any()
}
