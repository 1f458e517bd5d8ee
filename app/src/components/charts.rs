//! Charts as the pages show them: a figure per chart with its title and a sentence that says
//! what it shows (the drawing's accessible name), and the links between ranges, which work
//! without JavaScript.

use leptos::prelude::*;

use crate::api::charts::{Chart, ChartRange};

/// The figures of `charts`.
#[component]
pub fn ChartList(charts: Vec<Chart>) -> impl IntoView {
    view! {
        <div class="charts" data-testid="charts">
            {charts.into_iter().map(|c| {
                let title_id = format!("chart-{}-title", c.id);
                let summary_id = format!("chart-{}-summary", c.id);
                let labelled_by = title_id.clone();
                view! {
                    <figure class="chart panel" data-chart=c.id aria-labelledby=labelled_by>
                        <figcaption>
                            <h3 id=title_id>{c.title}</h3>
                            <p id=summary_id class="chart-summary">{c.summary}</p>
                        </figcaption>
                        {c.svg.map(|svg| view! { <div class="chart-drawing" inner_html=svg></div> })}
                    </figure>
                }
            }).collect_view()}
        </div>
    }
}

/// "Last 24 hours · Last 90 days": links to the same page with `?range=`.
#[component]
pub fn RangeLinks(path: String, current: ChartRange) -> impl IntoView {
    view! {
        <nav class="range-links" aria-label="Chart range">
            {[ChartRange::Day, ChartRange::Quarter].into_iter().map(|r| {
                let here = r == current;
                view! {
                    <a href=format!("{path}?range={}", r.as_str())
                        class=if here { "button button-small" } else { "button button-small button-secondary" }
                        aria-current=here.then_some("page")>
                        {match r { ChartRange::Day => "Last 24 hours", ChartRange::Quarter => "Last 90 days" }}
                    </a>
                }
            }).collect_view()}
        </nav>
    }
}
