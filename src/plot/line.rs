//! Line charts ([`super::line_plot`]): linear or logarithmic y axis, one coloured line
//! per series, the legend in the emptiest corner.

use anyhow::Result;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;

use super::scale::{bounds, linear_formatter, log_formatter, pad_linear, pad_log, pad_x};
use super::{
    frame, plot_err, Root, CAPTION_PT, DESC_PT, FONT, GRID_BOLD, GRID_LIGHT, LABEL_PT, PALETTE,
};

/// Series with at most this many points also get a marker at every point.
const MARKER_MAX_POINTS: usize = 30;

/// Draws the line chart of [`super::line_plot`] on `root`; `text` is false when no
/// font could be registered.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_line(
    root: &Root,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
    text: bool,
) -> Result<()> {
    let clean = finite_points(series);
    let points = || clean.iter().flat_map(|(_, p)| p.iter().copied());
    let (xs, ys) = (bounds(points().map(|p| p.0)), bounds(points().map(|p| p.1)));
    let use_log = log_y && ys.is_some_and(|(lo, _)| lo > 0.0);

    let x_range = match xs {
        Some((lo, hi)) => pad_x(lo, hi),
        None => 0.0..1.0,
    };
    let mut builder = ChartBuilder::on(root);
    builder.margin(15).margin_right(25);
    if text {
        builder
            .caption(title, (FONT, CAPTION_PT))
            .x_label_area_size(50)
            .y_label_area_size(80);
    }
    let labels = AxisText {
        x: x_label,
        y: y_label,
    };
    if use_log {
        let (lo, hi) = ys.unwrap_or((1.0, 1.0));
        let y_range = pad_log(lo, hi);
        let legend_pos = legend_position(&clean, &x_range, &y_range, true);
        // Enough key points for plotters to emit 2..9 x each decade (the formatter
        // keeps 1, 2 and 5) when the range is short, decades only otherwise.
        let decades = ((y_range.end / y_range.start).log10() - 1e-6).ceil() as usize;
        let y_ticks = if decades <= 2 { 10 * decades + 1 } else { 8 };
        let y_fmt = log_formatter(&y_range);
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range.log_scale())
            .map_err(plot_err)?;
        draw_lines(
            &mut chart,
            &labels,
            &clean,
            legend_pos,
            (&y_fmt, y_ticks),
            text,
        )
    } else {
        let y_range = match ys {
            Some((lo, hi)) => pad_linear(lo, hi),
            None => 0.0..1.0,
        };
        let legend_pos = legend_position(&clean, &x_range, &y_range, false);
        let y_fmt = linear_formatter(&y_range);
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(plot_err)?;
        draw_lines(&mut chart, &labels, &clean, legend_pos, (&y_fmt, 8), text)
    }
}

/// Each series with its points that have two finite coordinates.
fn finite_points(series: &[(String, Vec<(f64, f64)>)]) -> Vec<(&str, Vec<(f64, f64)>)> {
    series
        .iter()
        .map(|(name, pts)| {
            let pts = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (name.as_str(), pts)
        })
        .collect()
}

/// The axis titles of a line chart.
struct AxisText<'s> {
    x: &'s str,
    y: &'s str,
}

/// Draws the mesh, the frame, the series and their legend on a built chart.
fn draw_lines<'a, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    labels: &AxisText,
    series: &[(&str, Vec<(f64, f64)>)],
    legend_pos: SeriesLabelPosition,
    (y_fmt, y_ticks): (&dyn Fn(&f64) -> String, usize),
    text: bool,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_range = chart.x_range();
    let x_fmt = linear_formatter(&x_range);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .max_light_lines(4)
        .x_labels(10)
        .y_labels(y_ticks)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(y_fmt);
    if text {
        mesh.x_desc(labels.x)
            .y_desc(labels.y)
            .label_style((FONT, LABEL_PT))
            .axis_desc_style((FONT, DESC_PT));
    }
    mesh.draw().map_err(plot_err)?;
    frame(chart.plotting_area())?;

    let mut any_label = false;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut line = LineSeries::new(pts.iter().copied(), color.stroke_width(2));
        if pts.len() <= MARKER_MAX_POINTS {
            line = line.point_size(3);
        }
        let anno = chart.draw_series(line).map_err(plot_err)?;
        if text && !name.is_empty() {
            any_label = true;
            anno.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
        }
    }
    if any_label {
        chart
            .configure_series_labels()
            .position(legend_pos)
            .margin(12)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FONT, LABEL_PT))
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The corner of the plotting area that the fewest points fall into.
fn legend_position(
    series: &[(&str, Vec<(f64, f64)>)],
    x: &Range<f64>,
    y: &Range<f64>,
    log_y: bool,
) -> SeriesLabelPosition {
    let ty = |v: f64| if log_y { v.ln() } else { v };
    let (y0, y1) = (ty(y.start), ty(y.end));
    let mut counts = [0usize; 4]; // upper right, lower right, upper left, lower left
    for &(px, py) in series.iter().flat_map(|(_, p)| p.iter()) {
        let u = (px - x.start) / (x.end - x.start);
        let v = (ty(py) - y0) / (y1 - y0);
        let (right, left) = (u > 0.55, u < 0.45);
        let (top, bottom) = (v > 0.6, v < 0.4);
        counts[0] += usize::from(right && top);
        counts[1] += usize::from(right && bottom);
        counts[2] += usize::from(left && top);
        counts[3] += usize::from(left && bottom);
    }
    match (0..4).min_by_key(|&i| (counts[i], i)).unwrap_or(0) {
        0 => SeriesLabelPosition::UpperRight,
        1 => SeriesLabelPosition::LowerRight,
        2 => SeriesLabelPosition::UpperLeft,
        _ => SeriesLabelPosition::LowerLeft,
    }
}
