//! "My teams" and a team's page: who is in it and which pools it owns. Teams are Fedora
//! Accounts groups, refreshed at every sign-in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::charts::{Chart, get_team_charts};
use crate::api::requests::{cap_note, get_team_requests, money};
use crate::api::{PoolBrief, TeamSummary, TeamUpdate, TeamView, get_my_teams, get_team};
use crate::components::layout::PageHead;
use crate::components::live::{follow, forget_on_change, hydrated};
use crate::components::notice::ErrorNotice;
use crate::error::AppError;
use crate::format::urlencode;
use crate::pages::credentials::CredentialList;
use crate::pages::requests::RequestTable;
use crate::pages::routing::TeamBuildPreview;
use crate::pages::status::ChartsOf;

#[component]
pub fn TeamsPage() -> impl IntoView {
    let teams = Resource::new(|| (), |_| get_my_teams());
    view! {
        <PageHead title="My teams" lede="Your Fedora Accounts groups that copr-pools treats as teams, as of your last sign-in."/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading your teams…"</p> }>
            {move || Suspend::new(async move {
                match teams.await {
                    Ok(list) if list.is_empty() => view! { <NoTeams/> }.into_any(),
                    Ok(list) => view! { <TeamList teams=list/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn NoTeams() -> impl IntoView {
    view! {
        <div class="panel empty-state" data-testid="no-teams">
            <h2>"You are not in a team"</h2>
            <p>
                "A team is a Fedora Accounts group. None of your groups counts as a team on this "
                "server (its admins choose which groups do). Ask your group's sponsor to add you in "
                <a href="https://accounts.fedoraproject.org/">"Fedora Accounts"</a>
                ", then sign out and in again."
            </p>
        </div>
    }
}

#[component]
fn TeamList(teams: Vec<TeamSummary>) -> impl IntoView {
    view! {
        <ul class="card-list" data-testid="team-list">
            {teams.into_iter().map(|t| {
                let href = format!("/teams/{}", t.name);
                view! {
                    <li class="panel card">
                        <h2><a href=href>{t.name.clone()}</a></h2>
                        <p class="muted">
                            {format!("{} member{} · {} pool{}",
                                t.members, if t.members == 1 { "" } else { "s" },
                                t.pools, if t.pools == 1 { "" } else { "s" })}
                        </p>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

#[component]
pub fn TeamPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let hydrated = hydrated();
    let team = Resource::new(name, get_team);
    let charts = Resource::new(name, get_team_charts);
    // What the live stream brought: the pools' lines and the charts. Only those parts of the
    // page follow it, so the forms on it keep what is typed.
    let latest_pools = RwSignal::new(None::<Vec<PoolBrief>>);
    let latest_charts = RwSignal::new(None::<Vec<Chart>>);
    forget_on_change(name, move || {
        latest_pools.set(None);
        latest_charts.set(None);
    });
    follow(
        move || format!("/events/teams/{}", urlencode(&name())),
        hydrated.into(),
        move |update: TeamUpdate| {
            if let Some(c) = update.charts {
                latest_charts.set(Some(c));
            }
            if let Some(pools) = update.pools {
                latest_pools.set(Some(pools));
            }
        },
    );
    view! {
        <Title text=move || format!("Team {}", name())/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading the team…"</p> }>
            {move || Suspend::new(async move {
                match team.await {
                    Ok(t) => view! { <TeamBody team=t charts latest_pools latest_charts/> }.into_any(),
                    Err(error) => view! { <h1>{name()}</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TeamBody(
    team: TeamView,
    charts: Resource<Result<Vec<Chart>, AppError>>,
    latest_pools: RwSignal<Option<Vec<PoolBrief>>>,
    latest_charts: RwSignal<Option<Vec<Chart>>>,
) -> impl IntoView {
    let requests = Resource::new(
        {
            let name = team.name.clone();
            move || name.clone()
        },
        get_team_requests,
    );
    let new_request = format!("/teams/{}/requests/new", team.name);
    let back = format!("/teams/{}", team.name);
    view! {
        <div class="page-head">
            <div>
                <h1>{team.name.clone()}</h1>
                <p class="lede">"The Fedora Accounts group " <code>{team.name.clone()}</code> " as a copr-pools team."</p>
            </div>
        </div>
        {team.notice.clone().map(|n| view! { <p class="alert alert-info" role="status" data-testid="notice">{n}</p> })}
        {(!team.errors.is_empty()).then(|| view! {
            <div class="alert alert-error" role="alert">{team.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join(" ")}</div>
        })}
        <section class="section" aria-labelledby="team-pools">
            <div class="section-head">
                <h2 id="team-pools">"Pools"</h2>
                <a class="button button-small" href=new_request.clone() data-testid="request-pool">"Request a pool"</a>
            </div>
            {
                let (first, token, back, new_request) = (team.pools.clone(), team.csrf_token.clone(), back.clone(), new_request.clone());
                move || {
                    let pools = latest_pools.get().unwrap_or_else(|| first.clone());
                    if pools.is_empty() {
                        view! {
                            <p class="panel empty-state" data-testid="team-no-pools">
                                "This team owns no pool yet. "<a href=new_request.clone()>"Request one"</a>
                                ": a dedicated pool runs only your team's builds, on your cloud account; a Copr admin approves it and it starts."
                            </p>
                        }.into_any()
                    } else {
                        view! { <PoolTable pools token=token.clone() back=back.clone() admin=false/> }.into_any()
                    }
                }
            }
        </section>
        {(!team.pools.is_empty()).then(|| view! {
            <section class="section" aria-labelledby="team-usage">
                <h2 id="team-usage">"Usage this month"</h2>
                <ChartsOf charts latest=latest_charts.into()/>
            </section>
        })}
        <TeamBuildPreview team=team.name.clone()/>
        <section class="section" aria-labelledby="team-requests">
            <h2 id="team-requests">"Requests"</h2>
            <Suspense fallback=|| view! { <p class="muted" role="status">"Loading the requests…"</p> }>
                {move || Suspend::new(async move {
                    match requests.await {
                        Ok(list) if list.is_empty() => view! { <p class="muted" data-testid="no-requests">"No requests yet."</p> }.into_any(),
                        Ok(list) => view! { <RequestTable requests=list/> }.into_any(),
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
        <CredentialList team=team.name.clone() credentials=team.credentials/>
        <section class="section" aria-labelledby="team-members">
            <h2 id="team-members">"Members"</h2>
            <p class="muted">"Members who have signed in to copr-pools; membership itself is managed in Fedora Accounts."</p>
            <ul class="member-list" data-testid="team-members">
                {team.members.into_iter().map(|m| view! {
                    <li>
                        <strong>{m.username.clone()}</strong>
                        {m.display_name.map(|d| view! { <span class="muted">{format!(" · {d}")}</span> })}
                        {m.last_sign_in.map(|t| view! { <span class="muted small">{format!(" · last signed in {}", t.get(..10).unwrap_or(&t))}</span> })}
                    </li>
                }).collect_view()}
            </ul>
        </section>
    }
}

/// "$12.30 of $100.00 (12 %)"; from 80 % the cap note says so, with a warning class.
fn month_cost(p: &PoolBrief) -> (String, &'static str) {
    match (cap_note(p.month_cost, p.monthly_cap), p.monthly_cap) {
        (Some(note), _) => (
            note.text,
            if note.reached {
                "cap-reached"
            } else {
                "cap-warning"
            },
        ),
        (None, Some(cap)) if cap > 0.0 => (
            format!(
                "{} of {} ({:.0} %)",
                money(p.month_cost),
                money(cap),
                p.month_cost / cap * 100.0
            ),
            "",
        ),
        _ => (money(p.month_cost), ""),
    }
}

/// Pools with their machines, this month's use and cost, and what the viewer may do: a
/// team's members pause and resume (and ask for changes); admins also drain and retire.
#[component]
pub fn PoolTable(pools: Vec<PoolBrief>, token: String, back: String, admin: bool) -> impl IntoView {
    view! {
        <div class="table-wrap" role="region" aria-label="Pools" tabindex="0">
            <table class="data-table stack-on-phone" data-testid="pool-list">
                <thead><tr>
                    <th scope="col">"Pool"</th>
                    {admin.then(|| view! { <th scope="col">"Team"</th> })}
                    <th scope="col">"State"</th>
                    <th scope="col" class="num">"Starting"</th><th scope="col" class="num">"Ready"</th>
                    <th scope="col" class="num">"Taken"</th><th scope="col" class="num">"Max"</th>
                    <th scope="col">"This month"</th><th scope="col">"Actions"</th>
                </tr></thead>
                <tbody>
                    {pools.into_iter().map(|p| {
                        let (cost, cost_class) = month_cost(&p);
                        let action = format!("/pools/{}/state", p.name);
                        let states: Vec<(&str, &str)> = match (p.state.as_str(), admin) {
                            ("active", false) => vec![("paused", "Pause")],
                            ("paused", false) => vec![("active", "Resume")],
                            ("active", true) => vec![("paused", "Pause"), ("draining", "Drain")],
                            ("paused", true) => vec![("active", "Resume"), ("draining", "Drain")],
                            ("draining", true) => vec![("active", "Resume"), ("retired", "Retire")],
                            ("retired", true) => vec![("active", "Reactivate")],
                            _ => vec![],
                        };
                        let change = (!admin && p.from_request).then(|| format!("/teams/{}/requests/new?change={}", p.team.clone().unwrap_or_default(), p.name));
                        view! {
                            <tr>
                                <th scope="row"><span class="pool-name">{p.name.clone()}</span></th>
                                {admin.then(|| view! { <td data-label="Team">{p.team.clone().unwrap_or_else(|| "—".into())}</td> })}
                                <td data-label="State">
                                    <span class=format!("badge badge-{}", p.state)>{p.state.clone()}</span>
                                    {p.state_reason.clone().map(|r| view! { <p class="small muted state-reason">{r}</p> })}
                                </td>
                                <td class="num" data-label="Starting">{p.starting}</td>
                                <td class="num" data-label="Ready">{p.ready}</td>
                                <td class="num" data-label="Taken">{p.taken}</td>
                                <td class="num" data-label="Max">{p.max}</td>
                                <td data-label="This month" class=cost_class>{format!("{:.1} machine-hours · {cost}", p.month_hours)}</td>
                                <td data-label="Actions" class="actions">
                                    {states.into_iter().map(|(state, label)| view! {
                                        <form method="post" action=action.clone() class="inline-form">
                                            <input type="hidden" name="csrf_token" value=token.clone()/>
                                            <input type="hidden" name="state" value=state/>
                                            <input type="hidden" name="back" value=back.clone()/>
                                            <button type="submit" class="button button-secondary button-small" aria-label=format!("{label} {}", p.name)>{label}</button>
                                        </form>
                                    }).collect_view()}
                                    {change.map(|href| view! { <a class="button button-secondary button-small" href=href aria-label=format!("Ask to change {}", p.name)>"Ask for a change"</a> })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
