//! Drawing charts as SVG with `plotters` (its SVG backend, no fonts read: the browser renders
//! the text). One function draws lines and bars over a numeric x axis; callers say how to
//! label it.

use plotters::prelude::*;

/// The drawing's size in SVG units; the page scales it to its column.
const SIZE: (u32, u32) = (640, 250);
const FONT: &str = "sans-serif";

/// Okabe–Ito colours, told apart with the common colour-vision deficiencies.
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
pub const RED: RGBColor = RGBColor(213, 94, 0);
pub const GREY: RGBColor = RGBColor(110, 110, 110);

/// One line (or bar series) of a chart.
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    /// (x, y), x increasing.
    pub points: Vec<(f64, f64)>,
    pub bars: bool,
}

/// How a chart is laid out.
pub struct Frame<'a> {
    /// The element id the chart's title and summary carry (`{id}-title`, `{id}-summary`).
    pub id: &'a str,
    pub x: std::ops::Range<f64>,
    /// Points further apart than this are not joined (the engine was not running between).
    pub gap: f64,
    /// The y axis ends at least here.
    pub y_min_top: f64,
    pub y_desc: &'a str,
    pub x_label: &'a dyn Fn(f64) -> String,
    pub y_label: &'a dyn Fn(f64) -> String,
    /// Bars are this wide, in x units.
    pub bar_width: f64,
}

/// Draws `series` into an `<svg>` element named by the title and summary elements the page
/// puts beside it.
pub fn chart(frame: &Frame, series: &[Series]) -> Result<String, String> {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(frame.y_min_top, f64::max);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(frame.x.clone(), 0f64..top * 1.08)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(5)
            .x_label_formatter(&|x| (frame.x_label)(*x))
            .y_label_formatter(&|y| (frame.y_label)(*y))
            .y_desc(frame.y_desc)
            .label_style((FONT, 18))
            .axis_desc_style((FONT, 18))
            .max_light_lines(0)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(|e| e.to_string())?;
        for s in series {
            let color = s.color;
            let legend = move |(x, y): (i32, i32)| {
                Rectangle::new([(x, y - 4), (x + 16, y + 4)], color.filled())
            };
            if s.bars {
                let half = frame.bar_width / 2.0;
                chart
                    .draw_series(s.points.iter().map(|&(x, y)| {
                        Rectangle::new([(x - half, 0.0), (x + half, y)], color.filled())
                    }))
                    .map_err(|e| e.to_string())?
                    .label(s.label.clone())
                    .legend(legend);
                continue;
            }
            let style = ShapeStyle {
                color: color.to_rgba(),
                filled: false,
                stroke_width: 2,
            };
            for (i, piece) in pieces(&s.points, frame.gap).into_iter().enumerate() {
                let single = piece.len() == 1;
                let drawn = if single {
                    // A lone point (neighbours missing) is drawn as a dot, not a line.
                    chart
                        .draw_series(piece.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| e.to_string())?
                } else {
                    chart
                        .draw_series(LineSeries::new(piece, style))
                        .map_err(|e| e.to_string())?
                };
                if i == 0 {
                    drawn.label(s.label.clone()).legend(legend);
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 18))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(accessible(&out, frame.id))
}

/// Gives the drawing its accessible name (the title and summary beside it) and lets the page
/// scale it.
fn accessible(svg: &str, id: &str) -> String {
    svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" class=\"chart-svg\" aria-labelledby=\"{id}-title {id}-summary\" "
        ),
        1,
    )
}

/// Splits points where they are further apart than `gap`.
fn pieces(points: &[(f64, f64)], gap: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(last) if last.last().is_some_and(|q| p.0 - q.0 <= gap) => last.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_where_samples_are_missing() {
        let p = [(0.0, 1.0), (1.0, 2.0), (5.0, 3.0), (6.0, 1.0)];
        assert_eq!(pieces(&p, 1.5).len(), 2);
        assert_eq!(pieces(&p, 10.0).len(), 1);
        assert!(pieces(&[], 1.0).is_empty());
    }

    #[test]
    fn a_chart_is_an_svg_named_by_its_title_and_summary() {
        let label = |x: f64| format!("{x:.0}");
        let frame = Frame {
            id: "chart-machines",
            x: 0.0..10.0,
            gap: 2.0,
            y_min_top: 1.0,
            y_desc: "machines",
            x_label: &label,
            y_label: &label,
            bar_width: 0.8,
        };
        let svg = chart(
            &frame,
            &[Series {
                label: "ready".into(),
                color: GREEN,
                points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
                bars: false,
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{}", &svg[..80]);
        assert!(svg.contains("aria-labelledby=\"chart-machines-title chart-machines-summary\""));
        assert!(svg.contains("viewBox"), "scales with the page");
        assert!(
            svg.contains(">\nready\n<"),
            "the legend names the series: {svg}"
        );
        assert!(
            svg.contains(">\nmachines\n<"),
            "the y axis says what it counts"
        );
    }
}
