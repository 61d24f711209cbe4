//! The report's timeline as an SVG drawn with plotters: one row per component, its up, down
//! and no-data spans as bands, and one line series per component (high up, low down, middle no
//! data) labelled with the component's name.

use plotters::prelude::*;

use super::{Report, State};

const ROW: u32 = 26;
const LABELS: u32 = 330;

fn colour(state: State) -> RGBColor {
    match state {
        State::Up => RGBColor(76, 175, 80),
        State::Down => RGBColor(229, 57, 53),
        State::NoData => RGBColor(224, 224, 224),
    }
}

fn level(state: State) -> f64 {
    match state {
        State::Up => 0.8,
        State::NoData => 0.5,
        State::Down => 0.2,
    }
}

/// The SVG text of `report`'s timeline.
pub fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    draw(report, &mut out).map_err(|e| format!("drawing the plot: {e}"))?;
    Ok(out)
}

fn draw(report: &Report, out: &mut String) -> Result<(), String> {
    let rows = report.components.len().max(1);
    let height = 90 + ROW * rows as u32;
    let root = SVGBackend::with_string(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(text)?;
    let hours = |t: f64| (t - report.to) / 3600.0;
    let x0 = hours(report.from);
    let caption = format!(
        "uptime seen by hub {}, last {} h (overall {})",
        report.hub,
        report.hours,
        report
            .overall_percent
            .map_or("no data".to_string(), |p| format!("{p:.3} %"))
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(LABELS)
        .build_cartesian_2d(x0..0.0, 0.0..rows as f64)
        .map_err(text)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("hours before the report")
        .draw()
        .map_err(text)?;
    for (i, c) in report.components.iter().enumerate() {
        let base = (rows - 1 - i) as f64;
        chart
            .draw_series(c.timeline.iter().map(|s| {
                Rectangle::new(
                    [(hours(s.start), base + 0.1), (hours(s.end), base + 0.9)],
                    colour(s.state).mix(0.45).filled(),
                )
            }))
            .map_err(text)?;
        let mut points = Vec::new();
        for s in &c.timeline {
            let y = base + level(s.state);
            points.push((hours(s.start), y));
            points.push((hours(s.end), y));
        }
        let label = format!("{}.{}@{}", c.kind.as_str(), c.name, c.host);
        chart
            .draw_series(LineSeries::new(points, BLACK.stroke_width(1)))
            .map_err(text)?
            .label(label.clone());
        let (px, py) = chart.backend_coord(&(x0, base + 0.5));
        let figure = c
            .uptime_percent
            .map_or("-".to_string(), |p| format!("{p:.2}%"));
        root.draw(&Text::new(
            format!("{label}  {figure}"),
            (px - LABELS as i32 + 8, py - 6),
            ("sans-serif", 12),
        ))
        .map_err(text)?;
    }
    root.present().map_err(text)?;
    Ok(())
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}
