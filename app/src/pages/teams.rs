//! "My teams" and a team's page: who is in it and which pools it owns. Teams are Fedora
//! Accounts groups, refreshed at every sign-in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{TeamSummary, TeamView, get_my_teams, get_team};
use crate::components::layout::PageHead;
use crate::components::notice::ErrorNotice;
use crate::pages::credentials::CredentialList;

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
    let team = Resource::new(name, get_team);
    view! {
        <Title text=move || format!("Team {}", name())/>
        <Suspense fallback=|| view! { <p class="muted" role="status">"Loading the team…"</p> }>
            {move || Suspend::new(async move {
                match team.await {
                    Ok(t) => view! { <TeamBody team=t/> }.into_any(),
                    Err(error) => view! { <h1>{name()}</h1><ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TeamBody(team: TeamView) -> impl IntoView {
    view! {
        <div class="page-head">
            <div>
                <h1>{team.name.clone()}</h1>
                <p class="lede">"The Fedora Accounts group " <code>{team.name.clone()}</code> " as a copr-pools team."</p>
            </div>
        </div>
        <section class="section" aria-labelledby="team-pools">
            <h2 id="team-pools">"Pools"</h2>
            {if team.pools.is_empty() {
                view! {
                    <p class="muted" data-testid="team-no-pools">
                        "This team owns no pool yet. A pool is created for a team when a Copr admin approves the team's pool request."
                    </p>
                }.into_any()
            } else {
                view! {
                    <div class="table-wrap" role="region" aria-labelledby="team-pools" tabindex="0">
                        <table class="data-table stack-on-phone">
                            <thead><tr>
                                <th scope="col">"Pool"</th><th scope="col">"State"</th>
                                <th scope="col" class="num">"Max"</th><th scope="col" class="num">"Up"</th><th scope="col" class="num">"Taken"</th>
                            </tr></thead>
                            <tbody>
                                {team.pools.into_iter().map(|p| view! {
                                    <tr>
                                        <th scope="row"><span class="pool-name">{p.name}</span></th>
                                        <td data-label="State">
                                            <span class=format!("badge badge-{}", p.state)>{p.state.clone()}</span>
                                            {p.state_reason.map(|r| view! { <p class="small muted state-reason">{r}</p> })}
                                        </td>
                                        <td class="num" data-label="Max">{p.max}</td>
                                        <td class="num" data-label="Up">{p.up}</td>
                                        <td class="num" data-label="Taken">{p.taken}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
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
