//! The public status page: every pool with its machine counts, the queue of waiting tickets,
//! start statistics like Copr's own /status pages, and charts of the history. Readable without
//! JavaScript; once hydrated it follows its live stream (`/events/status`), so a change shows
//! within a second without a reload.

use leptos::prelude::*;

use leptos_router::hooks::use_query_map;

use crate::api::charts::{Chart, ChartRange, get_pool_charts};
use crate::api::tickets::{TicketDetail, TicketSearch, search_tickets};
use crate::api::{PoolStatus, QueueGroup, StatusSnapshot, StatusUpdate, get_status};
use crate::components::charts::{ChartList, RangeLinks};
use crate::components::layout::PageHead;
use crate::components::live::{follow, hydrated, merge};
use crate::components::notice::ErrorNotice;
use crate::error::AppError;
use crate::format::{human_duration, percent};
use crate::pages::requests::error_of;

/// The chart range a page was asked for (`?range=24h|90d`).
pub fn use_range() -> Memo<ChartRange> {
    let query = use_query_map();
    Memo::new(move |_| ChartRange::parse(&query.read().get("range").unwrap_or_default()))
}

#[component]
pub fn StatusPage() -> impl IntoView {
    let live = RwSignal::new(true);
    let hydrated = hydrated();
    let range = use_range();
    let status = Resource::new(|| (), |_| get_status());
    let charts = Resource::new(move || range.get(), |r| get_pool_charts(String::new(), r));
    // What the live stream brought since the page loaded (charts with the range they are of).
    let latest = RwSignal::new(None::<StatusSnapshot>);
    let latest_charts = RwSignal::new(None::<(ChartRange, Vec<Chart>)>);
    follow(
        move || format!("/events/status?range={}", range.get().as_str()),
        Signal::derive(move || live.get() && hydrated.get()),
        move |update: StatusUpdate| {
            if update.pools.is_some() || update.queue.is_some() {
                merge(latest, status, |s| {
                    if let Some(pools) = update.pools {
                        s.pools = pools;
                    }
                    if let Some(queue) = update.queue {
                        s.queue = queue;
                    }
                });
            }
            if let Some(c) = update.charts {
                latest_charts.set(Some((range.get_untracked(), c)));
            }
        },
    );

    view! {
        <PageHead title="Builder pools" lede="The machines Copr builds on, pool by pool, and the builds waiting for one.">
            <LiveToggle live hydrated/>
        </PageHead>
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading the pool status…"</p> }>
            {move || {
                let current = latest.get();
                Suspend::new(async move {
                    match current.map(Ok).unwrap_or(status.await) {
                        Ok(snapshot) => view! { <StatusBody snapshot/> }.into_any(),
                        Err(error) => view! {
                            <div class="alert alert-error" role="alert">
                                <strong>"The status could not be loaded. "</strong>
                                {error.to_string()}
                            </div>
                        }.into_any(),
                    }
                })
            }}
        </Transition>
        <section aria-labelledby="history-title" class="section">
            <div class="section-head">
                <h2 id="history-title">"History, all pools"</h2>
                {move || view! { <RangeLinks path="/".to_string() current=range.get()/> }}
            </div>
            <ChartsOf charts latest=fresh_charts(latest_charts, range)/>
        </section>
        <FindBuild/>
    }
}

/// The charts the live stream brought, if they are of the range shown.
pub fn fresh_charts(
    latest: RwSignal<Option<(ChartRange, Vec<Chart>)>>,
    range: Memo<ChartRange>,
) -> Signal<Option<Vec<Chart>>> {
    Signal::derive(move || {
        latest
            .get()
            .filter(|(r, _)| *r == range.get())
            .map(|(_, c)| c)
    })
}

/// Charts from `charts`, or from the live stream once it brought some.
#[component]
pub fn ChartsOf(
    charts: Resource<Result<Vec<Chart>, AppError>>,
    latest: Signal<Option<Vec<Chart>>>,
) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading the charts…"</p> }>
            {move || {
                let fresh = latest.get();
                Suspend::new(async move {
                    match fresh.map(Ok).unwrap_or(charts.await) {
                        Ok(charts) => view! { <ChartList charts/> }.into_any(),
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// Pauses and resumes the live updates. Disabled until the page is hydrated, because before
/// that there is nothing to pause.
#[component]
fn LiveToggle(live: RwSignal<bool>, hydrated: RwSignal<bool>) -> impl IntoView {
    view! {
        <button
            type="button"
            class="button button-secondary live-toggle"
            data-testid="live-toggle"
            aria-pressed=move || live.get().to_string()
            disabled=move || !hydrated.get()
            title=move || if hydrated.get() { "" } else { "Live updates start once the page has loaded" }
            on:click=move |_| live.update(|on| *on = !*on)
        >
            <span class=move || if live.get() && hydrated.get() { "dot dot-live" } else { "dot" } aria-hidden="true"></span>
            {move || if !hydrated.get() {
                "Live updates off"
            } else if live.get() {
                "Live updates on"
            } else {
                "Live updates paused"
            }}
        </button>
    }
}

#[component]
fn StatusBody(snapshot: StatusSnapshot) -> impl IntoView {
    let StatusSnapshot { pools, queue, .. } = snapshot;
    view! {
        <section aria-labelledby="pools-title" class="section">
            <h2 id="pools-title">"Pools"</h2>
            {if pools.is_empty() {
                view! { <NoPools/> }.into_any()
            } else {
                view! { <PoolTable pools/> }.into_any()
            }}
        </section>
        <section aria-labelledby="queue-title" class="section">
            <h2 id="queue-title">"Waiting builds"</h2>
            <QueueTable queue/>
        </section>
    }
}

/// "Why is my build waiting?": a GET form (it works before hydration), answered with the
/// waiting tickets whose sandbox names the owner or project, each with its reason.
#[component]
fn FindBuild() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let found = Resource::new(q, |q| async move {
        if q.trim().is_empty() {
            Ok(None)
        } else {
            search_tickets(q).await.map(Some)
        }
    });
    view! {
        <section aria-labelledby="find-title" class="section">
            <h2 id="find-title">"Why is my build waiting?"</h2>
            <Transition fallback=|| view! { <p class="muted" role="status">"Searching…"</p> }>
                {move || Suspend::new(async move {
                    let result = found.await;
                    let errors = match &result {
                        Err(AppError::Invalid(errors)) => errors.clone(),
                        _ => Vec::new(),
                    };
                    let error = error_of(&errors, "q");
                    view! {
                        <form method="get" action="/" class="panel form" role="search" data-testid="find-build">
                            <label for="find-q">"Copr owner, project, owner/project or ticket id"</label>
                            <div class="inline-fields">
                                <input id="find-q" name="q" type="search" value=q() placeholder="@python/python3.14"
                                    spellcheck="false" autocomplete="off" aria-invalid=error.is_some().then_some("true")
                                    aria-describedby="find-help"/>
                                <button type="submit" class="button">"Find"</button>
                            </div>
                            <p class="help" id="find-help">"Copr names a build's sandbox " <code>"owner/project--submitter"</code> "; any part of it finds the build's ticket."</p>
                            {error.map(|e| view! { <p class="field-error">{e}</p> })}
                        </form>
                        {match result {
                            Ok(Some(found)) => view! { <FoundTickets found/> }.into_any(),
                            Ok(None) | Err(AppError::Invalid(_)) => ().into_any(),
                            Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        }}
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn FoundTickets(found: TicketSearch) -> impl IntoView {
    if found.tickets.is_empty() {
        return view! {
            <p class="muted" data-testid="found-none">
                "No waiting build matches " <code>{found.query}</code>
                ". A build that already has a machine, or was not handed to copr-pools yet, is not in the queue."
            </p>
        }
        .into_any();
    }
    view! {
        <WaitingTickets tickets=found.tickets label="Matching waiting builds" testid="found-tickets"/>
        {found.truncated.then(|| view! { <p class="muted small">"Only the first 100 are shown; search for a longer part of the sandbox."</p> })}
    }
    .into_any()
}

/// Waiting tickets, each with its sandbox, tags, age and why it waits.
#[component]
pub fn WaitingTickets(
    tickets: Vec<TicketDetail>,
    label: &'static str,
    testid: &'static str,
) -> impl IntoView {
    view! {
        <div class="table-wrap" role="region" aria-label=label tabindex="0">
            <table class="data-table stack-on-phone" data-testid=testid>
                <thead><tr>
                    <th scope="col">"Ticket"</th>
                    <th scope="col">"Sandbox"</th>
                    <th scope="col">"Waiting for"</th>
                    <th scope="col">"Why"</th>
                </tr></thead>
                <tbody>
                    {tickets.into_iter().map(|t| view! {
                        <tr>
                            <th scope="row"><a href=format!("/api/v1/tickets/{}", t.id)>{format!("#{}", t.id)}</a></th>
                            <td data-label="Sandbox"><code>{t.sandbox.unwrap_or_default()}</code><TagList tags=t.tags label=""/></td>
                            <td data-label="Waiting for">{human_duration(t.age)}</td>
                            <td data-label="Why">{t.waiting_reason.map(|w| view! { <span data-code=w.code>{w.text}</span> })}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn NoPools() -> impl IntoView {
    view! {
        <div class="panel empty-state" data-testid="no-pools">
            <h3>"No pools yet"</h3>
            <p>
                "A " <strong>"pool"</strong> " is a set of builder machines of one kind (one cloud "
                "account, architecture and instance type) that Copr takes its builds from. Copr's "
                "backend asks for a builder with tags such as " <code>"arch_x86_64"</code>
                ", and gets a machine from a pool that offers them."
            </p>
            <p>
                "A team gets a pool by signing in with its Fedora account, registering its cloud "
                "credentials and requesting either a " <strong>"dedicated"</strong>
                " pool (only the team's own builds, paid from its account) or a "
                <strong>"community"</strong> " pool (builders it sponsors for everyone). Once a "
                "Copr admin approves the request, copr-pools starts the machines and routes the "
                "matching builds to them."
            </p>
        </div>
    }
}

#[component]
fn PoolTable(pools: Vec<PoolStatus>) -> impl IntoView {
    let sum = |f: fn(&PoolStatus) -> i64| pools.iter().map(f).sum::<i64>();
    let totals = [
        sum(|p| p.max),
        sum(|p| p.up),
        sum(|p| p.ready),
        sum(|p| p.taken),
        sum(|p| p.starting),
        sum(|p| p.delete_requested),
        sum(|p| p.deleting),
        sum(|p| p.releasing),
    ];
    view! {
        <div class="table-wrap" role="region" aria-labelledby="pools-title" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="pool-table">
                <thead>
                    <tr>
                        <th scope="col">"Pool"</th>
                        <th scope="col">"State"</th>
                        <th scope="col" class="num">"Max"</th>
                        <th scope="col" class="num">"Up"</th>
                        <th scope="col" class="num">"Ready"</th>
                        <th scope="col" class="num">"Taken"</th>
                        <th scope="col" class="num">"Starting"</th>
                        <th scope="col" class="num">"Delete requested"</th>
                        <th scope="col" class="num">"Deleting"</th>
                        <th scope="col" class="num">"Releasing"</th>
                        <th scope="col" class="num">"Start success"</th>
                        <th scope="col" class="num">"Avg. start"</th>
                    </tr>
                </thead>
                <tbody>
                    {pools.into_iter().map(|p| view! { <PoolRow pool=p/> }).collect_view()}
                </tbody>
                <tfoot>
                    <tr>
                        <th scope="row" colspan="2">"Totals"</th>
                        {totals.into_iter().zip(["Max", "Up", "Ready", "Taken", "Starting", "Delete requested", "Deleting", "Releasing"])
                            .map(|(n, label)| view! { <td class="num" data-label=label>{n}</td> }).collect_view()}
                        <td></td>
                        <td></td>
                    </tr>
                </tfoot>
            </table>
        </div>
    }
}

#[component]
fn PoolRow(pool: PoolStatus) -> impl IntoView {
    let state_class = format!("badge badge-{}", pool.state);
    let numbers = [
        ("Max", pool.max.to_string()),
        ("Up", pool.up.to_string()),
        ("Ready", pool.ready.to_string()),
        ("Taken", pool.taken.to_string()),
        ("Starting", pool.starting.to_string()),
        ("Delete requested", pool.delete_requested.to_string()),
        ("Deleting", pool.deleting.to_string()),
        ("Releasing", pool.releasing.to_string()),
        ("Start success", percent(pool.start_success_rate)),
        (
            "Avg. start",
            pool.start_time_avg
                .map(human_duration)
                .unwrap_or_else(|| "–".into()),
        ),
    ];
    view! {
        <tr>
            <th scope="row">
                <a class="pool-name" href=format!("/pools/{}", pool.name)>{pool.name.clone()}</a>
                <TagList tags=pool.tags label=""/>
                <TagList tags=pool.tags_on_demand label="on demand"/>
                {pool.description.map(|d| view! { <details><summary>"About"</summary><p>{d}</p></details> })}
            </th>
            <td data-label="State">
                <span class=state_class>{pool.state}</span>
                {pool.cap.map(|c| view! {
                    <p class=if c.reached { "cap-note cap-reached" } else { "cap-note cap-warning" } data-testid="cap-note">{c.text}</p>
                })}
            </td>
            {numbers.into_iter().map(|(label, value)| view! { <td class="num" data-label=label>{value}</td> }).collect_view()}
        </tr>
    }
}

/// Tags as small chips; nothing when there are none.
#[component]
fn TagList(tags: Vec<String>, label: &'static str) -> impl IntoView {
    (!tags.is_empty()).then(|| {
        view! {
            <span class="tag-list">
                {(!label.is_empty()).then(|| view! { <span class="tag-label">{label} ":"</span> })}
                {tags.into_iter().map(|t| view! { <code class="tag">{t}</code> }).collect_view()}
            </span>
        }
    })
}

#[component]
fn QueueTable(queue: Vec<QueueGroup>) -> impl IntoView {
    if queue.is_empty() {
        return view! {
            <p class="muted" data-testid="queue-empty">"No builds are waiting for a machine."</p>
        }
        .into_any();
    }
    view! {
        <div class="table-wrap" role="region" aria-labelledby="queue-title" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="queue-table">
                <thead>
                    <tr>
                        <th scope="col">"Requested tags"</th>
                        <th scope="col" class="num">"Waiting"</th>
                        <th scope="col" class="num">"Oldest"</th>
                        <th scope="col">"Why they wait"</th>
                    </tr>
                </thead>
                <tbody>
                    {queue.into_iter().map(|g| view! {
                        <tr>
                            <th scope="row">
                                <TagList tags=g.tags label=""/>
                                {(!g.servable).then(|| view! {
                                    <span class="badge badge-warning" title="No active pool offers all of these tags, so these tickets cannot be served">
                                        "no pool offers these tags"
                                    </span>
                                })}
                            </th>
                            <td class="num" data-label="Waiting">{g.waiting}</td>
                            <td class="num" data-label="Oldest">{human_duration(g.oldest_age_secs)}</td>
                            <td data-label="Why they wait">
                                <ul class="reasons" data-testid="queue-reasons">
                                    {g.reasons.into_iter().map(|r| view! {
                                        <li data-code=r.code>
                                            {(g.waiting > 1).then(|| view! { <span class="reason-count">{format!("{} × ", r.count)}</span> })}
                                            {r.text}
                                        </li>
                                    }).collect_view()}
                                </ul>
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
