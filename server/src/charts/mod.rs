//! The charts of the status, pool and team pages, from the history the engine records
//! ([`crate::engine::history`]) and the usage it meters: machines by state and waiting builds,
//! time from takeTicket to a machine, start success; and a team's machine-hours and cost this
//! month against its cap. Each chart comes with a sentence that says what it shows.

pub mod draw;

use std::collections::BTreeMap;

use app::api::charts::{Chart, ChartRange};
use app::api::requests::money;
use chrono::{Datelike, TimeZone, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::engine::history::{self, FINE, HOURLY};
use crate::engine::model::Ms;
use crate::engine::store::month_start;
use crate::entities::{pool_history, pools, usage};
use draw::{Frame, Series};

/// The step and length of a range, in milliseconds.
fn span(range: ChartRange) -> (i32, Ms) {
    match range {
        ChartRange::Day => (FINE, 24 * 3_600_000),
        ChartRange::Quarter => (HOURLY, 90 * 86_400_000),
    }
}

fn utc(ms: f64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn whole(y: f64) -> String {
    if y.fract().abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

/// "1 build", "2 builds", "2.5 builds" (hourly means).
fn counted(n: f64, word: &str) -> String {
    if (n - 1.0).abs() < 1e-9 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", whole(n))
    }
}

fn percent(y: f64) -> String {
    format!("{y:.0} %")
}

fn minutes(ms: f64) -> String {
    let s = ms / 1000.0;
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// Rows merged into one per `every` milliseconds: the mean of their samples, the sums of
/// their counts, the median of their p50s and the worst of their p95s.
fn coarsen(rows: Vec<pool_history::Model>, every: Ms) -> Vec<pool_history::Model> {
    let mut groups: BTreeMap<Ms, Vec<pool_history::Model>> = BTreeMap::new();
    for r in rows {
        groups
            .entry(r.at_ms.div_euclid(every) * every)
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(at_ms, group)| {
            let sampled: Vec<&pool_history::Model> =
                group.iter().filter(|r| r.samples > 0).collect();
            let n = sampled.len().max(1) as f64;
            let mean =
                |f: fn(&pool_history::Model) -> f64| sampled.iter().map(|r| f(r)).sum::<f64>() / n;
            let mut p50s: Vec<i64> = group.iter().filter_map(|r| r.to_ready_p50_ms).collect();
            p50s.sort_unstable();
            pool_history::Model {
                pool: group[0].pool.clone(),
                step_secs: (every / 1000) as i32,
                at_ms,
                ready: mean(|r| r.ready),
                taken: mean(|r| r.taken),
                starting: mean(|r| r.starting),
                ending: mean(|r| r.ending),
                waiting: mean(|r| r.waiting),
                samples: group.iter().map(|r| r.samples).sum(),
                starts: group.iter().map(|r| r.starts).sum(),
                start_failures: group.iter().map(|r| r.start_failures).sum(),
                assigned: group.iter().map(|r| r.assigned).sum(),
                to_ready_p50_ms: p50s.get(p50s.len() / 2).copied(),
                to_ready_p95_ms: group.iter().filter_map(|r| r.to_ready_p95_ms).max(),
            }
        })
        .collect()
}

/// The drawing of `series`, when there is something to show.
fn drawing(show: bool, frame: &Frame, series: &[Series]) -> Option<String> {
    if !show {
        return None;
    }
    draw::chart(frame, series)
        .inspect_err(|e| tracing::error!(error = %e, "cannot draw a chart"))
        .ok()
}

/// The three charts of one pool, or of every pool for `pool == ""`, over `range`, as of `now`.
pub async fn pool_charts(
    db: &impl ConnectionTrait,
    pool: &str,
    range: ChartRange,
    now: Ms,
) -> Result<Vec<Chart>, DbErr> {
    let (step, length) = span(range);
    let step_ms = i64::from(step) * 1000;
    // The axis ends where the current interval ends, so a chart drawn twice in one interval
    // with the same data is the same drawing (the live stream sends only what changed).
    let to = history::interval_of(now, step) + step_ms;
    let from = to - length;
    let mut rows = history::series(db, pool, step, from).await?;
    let mut step_ms = step_ms;
    if range == ChartRange::Quarter {
        // 360 points of 6 hours draw 90 days as well as 2,160 hourly ones, at a sixth of the size.
        step_ms = 6 * 3_600_000;
        rows = coarsen(rows, step_ms);
    }
    // x is in hours (24 h) or days (90 days) since the epoch, so the axis's ticks fall on
    // whole hours or days.
    let unit = match range {
        ChartRange::Day => 3_600_000.0,
        ChartRange::Quarter => 86_400_000.0,
    };
    let x_of = move |ms: i64| ms as f64 / unit;
    let time_label = move |x: f64| match range {
        ChartRange::Day => utc(x * unit).format("%H:%M").to_string(),
        ChartRange::Quarter => utc(x * unit).format("%b %-d").to_string(),
    };
    let frame = |id: &'static str,
                 y_desc: &'static str,
                 y_min_top: f64,
                 y_label: &'static dyn Fn(f64) -> String| Frame {
        id,
        x: x_of(from)..x_of(to),
        gap: 2.5 * step_ms as f64 / unit,
        y_min_top,
        y_desc,
        x_label: &time_label,
        y_label,
        bar_width: 0.0,
    };
    let words = range.words();
    let mut charts = Vec::new();

    // Machines by state, and waiting builds.
    let sampled: Vec<&pool_history::Model> = rows.iter().filter(|r| r.samples > 0).collect();
    let series = |label: &str, color, f: fn(&pool_history::Model) -> f64| Series {
        label: label.to_string(),
        color,
        points: sampled.iter().map(|r| (x_of(r.at_ms), f(r))).collect(),
        bars: false,
    };
    let machines = [
        series("ready", draw::GREEN, |r| r.ready),
        series("taken", draw::BLUE, |r| r.taken),
        series("starting", draw::ORANGE, |r| r.starting),
        series("releasing or deleting", draw::PURPLE, |r| r.ending),
        series("builds waiting", draw::RED, |r| r.waiting),
    ];
    let summary = match sampled.last() {
        None => format!(
            "No samples in the {words} yet: the engine records one every {} minutes while it runs.",
            FINE / 60
        ),
        Some(last) => {
            let peak_up = sampled
                .iter()
                .map(|r| r.ready + r.taken + r.starting + r.ending)
                .fold(0.0, f64::max);
            let peak_waiting = sampled.iter().map(|r| r.waiting).fold(0.0, f64::max);
            format!(
                "Last sample: {} ready, {} taken, {} starting, {} releasing or deleting; {} waiting. Most in the {words}: {}, {} waiting.",
                whole(last.ready),
                whole(last.taken),
                whole(last.starting),
                whole(last.ending),
                counted(last.waiting, "build"),
                counted(peak_up, "machine"),
                counted(peak_waiting, "build"),
            )
        }
    };
    charts.push(Chart {
        id: "machines".into(),
        title: format!("Machines by state and waiting builds, {words}"),
        summary,
        svg: drawing(
            !sampled.is_empty(),
            &frame("chart-machines", "machines / builds", 4.0, &whole),
            &machines,
        ),
    });

    // Time from takeTicket to a machine.
    let timed: Vec<&pool_history::Model> = rows
        .iter()
        .filter(|r| r.to_ready_p50_ms.is_some())
        .collect();
    let assigned: i64 = rows.iter().map(|r| i64::from(r.assigned)).sum();
    let percentile = |label: &str, color, f: fn(&pool_history::Model) -> Option<i64>| Series {
        label: label.to_string(),
        color,
        points: timed
            .iter()
            .filter_map(|r| f(r).map(|v| (x_of(r.at_ms), v as f64)))
            .collect(),
        bars: false,
    };
    let waits = [
        percentile("p50", draw::BLUE, |r| r.to_ready_p50_ms),
        percentile("p95", draw::RED, |r| r.to_ready_p95_ms),
    ];
    let worst = timed
        .iter()
        .filter_map(|r| r.to_ready_p95_ms)
        .max()
        .unwrap_or(0);
    charts.push(Chart {
        id: "to-ready".into(),
        title: format!("Time from takeTicket to a machine, {words}"),
        summary: if timed.is_empty() {
            format!("No build got a machine in the {words}.")
        } else {
            format!(
                "{} got a machine in the {words}; the slowest interval's p95 was {}.",
                counted(assigned as f64, "build"),
                minutes(worst as f64)
            )
        },
        svg: drawing(
            !timed.is_empty(),
            &frame("chart-to-ready", "time to a machine", 60_000.0, &minutes),
            &waits,
        ),
    });

    // Start success.
    let started: Vec<&pool_history::Model> = rows.iter().filter(|r| r.starts > 0).collect();
    let starts: i64 = started.iter().map(|r| i64::from(r.starts)).sum();
    let failures: i64 = started.iter().map(|r| i64::from(r.start_failures)).sum();
    let success = Series {
        label: "starts that succeeded".into(),
        color: draw::GREEN,
        points: started
            .iter()
            .map(|r| {
                let ok = f64::from(r.starts - r.start_failures) / f64::from(r.starts);
                (x_of(r.at_ms), ok * 100.0)
            })
            .collect(),
        bars: false,
    };
    charts.push(Chart {
        id: "start-success".into(),
        title: format!("Start success, {words}"),
        summary: if starts == 0 {
            format!("No machine was started in the {words}.")
        } else {
            format!(
                "{} in the {words}, {failures} failed ({:.0} % succeeded).",
                counted(starts as f64, "start"),
                (starts - failures) as f64 / starts as f64 * 100.0
            )
        },
        svg: drawing(
            starts > 0,
            &frame("chart-start-success", "succeeded", 100.0, &percent),
            &[success],
        ),
    });
    Ok(charts)
}

/// A team's month so far: machine-hours per day, and the cost day by day against the sum of
/// its pools' monthly caps (drawn only when every pool of the team has one).
pub async fn team_charts(
    db: &impl ConnectionTrait,
    team_id: i32,
    now: Ms,
) -> Result<Vec<Chart>, DbErr> {
    let owned = pools::Entity::find()
        .filter(pools::Column::OwnerTeamId.eq(team_id))
        .all(db)
        .await?;
    let names: Vec<String> = owned.iter().map(|p| p.name.clone()).collect();
    let cap: Option<f64> = if owned.is_empty() {
        None
    } else {
        owned.iter().map(|p| p.monthly_cap).sum()
    };
    let mut days: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    if !names.is_empty() {
        for u in usage::Entity::find()
            .filter(usage::Column::Pool.is_in(names))
            .filter(usage::Column::Day.gte(month_start(now)))
            .all(db)
            .await?
        {
            let Ok(day) = chrono::NaiveDate::parse_from_str(&u.day, "%Y-%m-%d") else {
                continue;
            };
            let e = days.entry(day.day()).or_default();
            e.0 += u.machine_ms as f64 / 3_600_000.0;
            e.1 += u.cost;
        }
    }
    let today = utc(now as f64);
    let month_days = days_in_month(today.year(), today.month());
    let month_name = today.format("%B").to_string();
    let day_label = {
        let short = today.format("%b").to_string();
        move |x: f64| format!("{short} {x:.0}")
    };
    let x = 0.5..f64::from(month_days) + 0.5;
    let hours_total: f64 = days.values().map(|d| d.0).sum();
    let cost_total: f64 = days.values().map(|d| d.1).sum();
    let busiest = days
        .iter()
        .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .map(|(d, v)| (*d, v.0));

    let hours = Series {
        label: "machine-hours".into(),
        color: draw::BLUE,
        points: days.iter().map(|(d, v)| (f64::from(*d), v.0)).collect(),
        bars: true,
    };
    let mut charts = vec![Chart {
        id: "usage-hours".into(),
        title: format!("Machine-hours per day, {month_name}"),
        summary: match busiest {
            None => format!("The team's pools used no machine time in {month_name} yet."),
            Some((d, h)) => format!(
                "{hours_total:.1} machine-hours in {month_name} so far; the busiest day was {} {d} with {h:.1}.",
                today.format("%b")
            ),
        },
        svg: drawing(
            busiest.is_some(),
            &Frame {
                id: "chart-usage-hours",
                x: x.clone(),
                gap: 1.5,
                y_min_top: 1.0,
                y_desc: "machine-hours",
                x_label: &day_label,
                y_label: &whole,
                bar_width: 0.7,
            },
            &[hours],
        ),
    }];

    let mut running = 0.0;
    let cumulative: Vec<(f64, f64)> = (1..=today.day())
        .map(|d| {
            running += days.get(&d).map_or(0.0, |v| v.1);
            (f64::from(d), running)
        })
        .collect();
    let mut lines = vec![Series {
        label: "spent this month".into(),
        color: draw::RED,
        points: cumulative,
        bars: false,
    }];
    if let Some(cap) = cap {
        lines.push(Series {
            label: format!("monthly cap ({})", money(cap)),
            color: draw::GREY,
            points: vec![(1.0, cap), (f64::from(month_days), cap)],
            bars: false,
        });
    }
    let money_label = |y: f64| money(y);
    charts.push(Chart {
        id: "usage-cost".into(),
        title: format!("Cost in {month_name} against the cap"),
        summary: match cap {
            Some(cap) if cap > 0.0 => format!(
                "{} spent of the {} monthly cap ({:.0} %).",
                money(cost_total),
                money(cap),
                cost_total / cap * 100.0
            ),
            _ if owned.is_empty() => "The team has no pool yet.".into(),
            _ => format!(
                "{} spent in {month_name}; not every pool of the team has a monthly cap.",
                money(cost_total)
            ),
        },
        svg: drawing(
            !owned.is_empty(),
            &Frame {
                id: "chart-usage-cost",
                x,
                gap: 1.5,
                y_min_top: cap.unwrap_or(1.0).max(1.0),
                y_desc: "cost",
                x_label: &day_label,
                y_label: &money_label,
                bar_width: 0.0,
            },
            &lines,
        ),
    });
    Ok(charts)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = chrono::NaiveDate::from_ymd_opt(year, month, 1);
    let next = if month == 12 {
        chrono::NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        chrono::NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_days_are_drawn_from_six_hour_points() {
        let hour = |h: i64, ready: f64, p95: Option<i64>| pool_history::Model {
            pool: "p".into(),
            step_secs: HOURLY,
            at_ms: h * 3_600_000,
            ready,
            taken: 0.0,
            starting: 0.0,
            ending: 0.0,
            waiting: 0.0,
            samples: if ready < 0.0 { 0 } else { 12 },
            starts: 2,
            start_failures: 1,
            assigned: 3,
            to_ready_p50_ms: p95.map(|v| v / 2),
            to_ready_p95_ms: p95,
        };
        let rows = vec![
            hour(0, 2.0, Some(100)),
            hour(1, 4.0, Some(900)),
            hour(2, -1.0, None),
            hour(6, 1.0, None),
        ];
        let merged = coarsen(rows, 6 * 3_600_000);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].ready, 3.0, "the mean of the sampled hours only");
        assert_eq!(
            (
                merged[0].starts,
                merged[0].start_failures,
                merged[0].assigned
            ),
            (6, 3, 9)
        );
        assert_eq!(merged[0].to_ready_p95_ms, Some(900), "the worst p95");
        assert_eq!(merged[0].to_ready_p50_ms, Some(450));
        assert_eq!(merged[1].at_ms, 6 * 3_600_000);
        assert_eq!(merged[1].to_ready_p50_ms, None);
    }

    #[test]
    fn month_lengths() {
        assert_eq!(days_in_month(2026, 2), 28);
        assert_eq!(days_in_month(2028, 2), 29);
        assert_eq!(days_in_month(2026, 12), 31);
        assert_eq!(days_in_month(2026, 11), 30);
    }
}
