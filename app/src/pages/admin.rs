//! The admin overview: the allocation engine's state and the audit log.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{AdminOverview, get_admin_overview};
use crate::components::layout::PageHead;
use crate::components::notice::ErrorNotice;
use crate::format::human_duration;
use crate::pages::teams::PoolTable;

#[component]
pub fn AdminPage() -> impl IntoView {
    let query = use_query_map();
    let before = move || {
        query
            .read()
            .get("before")
            .and_then(|b| b.parse::<i32>().ok())
    };
    let overview = Resource::new(before, get_admin_overview);
    view! {
        <PageHead title="Admin" lede="The allocation engine and everything that changed, for Copr admins."/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! { <Overview o/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Overview(o: AdminOverview) -> impl IntoView {
    let e = o.engine;
    let facts = vec![
        (
            "Engine",
            if e.running_here {
                "running on this replica".to_string()
            } else {
                "on standby (another replica runs it)".to_string()
            },
        ),
        (
            "Last pass",
            e.last_pass_secs_ago.map_or("none yet".to_string(), |s| {
                format!("{} ago, took {:.1} ms", human_duration(s), e.last_pass_ms)
            }),
        ),
        ("Passes", e.passes.to_string()),
        ("Tickets assigned", e.tickets_assigned.to_string()),
        (
            "Passes rerun after a concurrent change",
            e.conflicts.to_string(),
        ),
        ("Hooks running", e.hooks_running.to_string()),
        ("Users", o.users.to_string()),
        ("Teams", o.teams.to_string()),
        (
            "Pools",
            if o.pools_by_state.is_empty() {
                "none".to_string()
            } else {
                o.pools_by_state
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    let pending = o.pending_requests;
    let pools = o.pools.clone();
    view! {
        {o.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
        {(!o.errors.is_empty()).then(|| view! {
            <div class="alert alert-error" role="alert" data-testid="form-errors">{o.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join(" ")}</div>
        })}
        <nav class="admin-links" aria-label="Admin">
            <a class="button" href="/admin/requests" data-testid="queue-link">
                {if pending == 0 { "Pool requests".to_string() } else { format!("Pool requests ({pending} waiting)") }}
            </a>
            " "
            <a class="button button-secondary" href="/admin/prices">"Price list"</a>
            " "
            <a class="button button-secondary" href="/admin/routing">"Routing rules"</a>
            " "
            <a class="button button-secondary" href="/admin/tokens">"API tokens"</a>
        </nav>
        <section class="section" aria-labelledby="pools-title">
            <h2 id="pools-title">"Pools"</h2>
            {if pools.is_empty() {
                view! { <p class="muted">"No pools yet: they come from approved requests, or from `copr-pools pools import`."</p> }.into_any()
            } else {
                view! {
                    <PoolTable pools=pools.clone() token=o.csrf_token.clone() back="/admin".to_string() admin=true/>
                    <details class="section">
                        <summary>"Edit a pool's limits and budget"</summary>
                        {pools.into_iter().map(|p| {
                            let prefix = format!("edit-{}", p.name);
                            let field = |k: &str, label: &str, value: String| {
                                let id = format!("{prefix}-{k}");
                                view! { <label for=id.clone()>{label.to_string()}</label><input id=id name=k.to_string() value=value inputmode="decimal"/> }
                            };
                            view! {
                                <form method="post" action=format!("/pools/{}/limits", p.name) class="panel form section" data-testid=format!("edit-{}", p.name)>
                                    <h3>{p.name.clone()}</h3>
                                    <input type="hidden" name="csrf_token" value=o.csrf_token.clone()/>
                                    {field("max", "Most machines at once", p.max.to_string())}
                                    {field("max_starting", "Starting at once", p.max_starting.to_string())}
                                    {field("max_prealloc", "Kept ready", p.max_prealloc.to_string())}
                                    {field("price_per_hour", "Price per machine-hour (USD)", p.price_per_hour.map(|x| x.to_string()).unwrap_or_default())}
                                    {field("monthly_cap", "Monthly cap (USD, empty for none)", p.monthly_cap.map(|x| x.to_string()).unwrap_or_default())}
                                    <button type="submit" class="button button-secondary">{format!("Save {}", p.name)}</button>
                                </form>
                            }
                        }).collect_view()}
                    </details>
                }.into_any()
            }}
        </section>
        <section class="section" aria-labelledby="engine-title">
            <h2 id="engine-title">"Engine"</h2>
            <dl class="facts panel" data-testid="engine-facts">
                {facts.into_iter().map(|(k, v)| view! { <div><dt>{k}</dt><dd>{v}</dd></div> }).collect_view()}
            </dl>
        </section>
        <section class="section" aria-labelledby="audit-title">
            <h2 id="audit-title">"Audit log"</h2>
            {if o.audit.is_empty() {
                view! { <p class="muted">"Nothing recorded yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap" role="region" aria-labelledby="audit-title" tabindex="0">
                        <table class="data-table stack-on-phone" data-testid="audit-table">
                            <thead><tr>
                                <th scope="col">"When (UTC)"</th><th scope="col">"Who"</th><th scope="col">"What"</th>
                                <th scope="col">"Object"</th><th scope="col">"Details"</th>
                            </tr></thead>
                            <tbody>
                                {o.audit.into_iter().map(|a| view! {
                                    <tr>
                                        <td data-label="When" class="nowrap">{a.at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                        <td data-label="Who">{a.actor}</td>
                                        <td data-label="What"><code>{a.action}</code></td>
                                        <td data-label="Object">{a.object}</td>
                                        <td data-label="Details" class="details">{a.details}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
            {o.older.map(|id| view! { <p><a class="button button-secondary" href=format!("/admin?before={id}")>"Older entries"</a></p> })}
        </section>
    }
}
