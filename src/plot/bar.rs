//! Bar plots ([`super::bar_plot`]): one bar per value from a zero baseline, named (or
//! indexed) on the x axis, with the values written above the bars when they are few.

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

use super::scale::{bounds, fmt_value, linear_formatter, shorten, slot_index};
use super::{
    frame, plot_err, Chart, Root, CAPTION_PT, DESC_PT, FONT, GRID_BOLD, GRID_LIGHT, LABEL_PT,
    PALETTE,
};

/// Bar plots with at most this many bars get the value written above each bar.
const BAR_MAX_ANNOTATED: usize = 25;

/// Draws the bar plot of [`super::bar_plot`] on `root`; `text` is false when no font
/// could be registered.
pub(super) fn render_bar(
    root: &Root,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
    text: bool,
) -> Result<()> {
    let finite = bars.iter().map(|b| b.1).filter(|v| v.is_finite());
    let (lo, hi) = bounds(finite).unwrap_or((0.0, 0.0));
    let y_range = bar_range(lo.min(0.0), hi.max(0.0));
    let mut chart = bar_chart(root, title, bars.len(), &y_range, text)?;
    bar_axes(&mut chart, y_label, bars, &y_range, text)?;
    frame(chart.plotting_area())?;
    draw_bars(&mut chart, bars, &y_range)?;
    if text && bars.len() <= BAR_MAX_ANNOTATED {
        annotate_bars(&mut chart, bars, &y_range)?;
    }
    Ok(())
}

/// The chart: one unit-wide slot per bar on x, `y_range` on y.
fn bar_chart<'a, 'b>(
    root: &'a Root<'b>,
    title: &str,
    n: usize,
    y_range: &Range<f64>,
    text: bool,
) -> Result<Chart<'a, 'b>> {
    let x_range = -0.5..(n.max(1) as f64 - 0.5);
    let mut builder = ChartBuilder::on(root);
    builder.margin(15).margin_right(25);
    if text {
        builder
            .caption(title, (FONT, CAPTION_PT))
            .x_label_area_size(45)
            .y_label_area_size(80);
    }
    builder
        .build_cartesian_2d(x_range, y_range.clone())
        .map_err(plot_err)
}

/// The mesh: horizontal grid lines, bar names (or indices) on x, values on y.
fn bar_axes(
    chart: &mut Chart,
    y_label: &str,
    bars: &[(String, f64)],
    y_range: &Range<f64>,
    text: bool,
) -> Result<()> {
    let n = bars.len();
    let naming = bar_naming(bars);
    let x_fmt = |v: &f64| -> String {
        match (slot_index(*v, n), &naming) {
            (Some(i), BarNaming::Names(max_chars)) => shorten(&bars[i].0, *max_chars),
            (Some(i), BarNaming::Indices(step)) if i % step == 0 => i.to_string(),
            _ => String::new(),
        }
    };
    let y_fmt = linear_formatter(y_range);
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .x_labels(n.clamp(1, 200))
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt);
    if text {
        mesh.y_desc(y_label)
            .label_style((FONT, LABEL_PT))
            .axis_desc_style((FONT, DESC_PT));
    }
    mesh.draw().map_err(plot_err)
}

/// The bars with a finite value, and the zero line when the axis goes below zero.
fn draw_bars(chart: &mut Chart, bars: &[(String, f64)], y_range: &Range<f64>) -> Result<()> {
    let color = PALETTE[0];
    let half = 0.4;
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| b.1.is_finite())
                .map(|(i, b)| {
                    let x = i as f64;
                    Rectangle::new([(x - half, 0.0), (x + half, b.1)], color.filled())
                }),
        )
        .map_err(plot_err)?;
    if y_range.start < 0.0 {
        chart
            .draw_series(LineSeries::new(
                [(chart.x_range().start, 0.0), (chart.x_range().end, 0.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Each value written just beyond the end of its bar ("n/a" for a non-finite one).
fn annotate_bars(chart: &mut Chart, bars: &[(String, f64)], y_range: &Range<f64>) -> Result<()> {
    let size = if bars.len() <= 12 { 13 } else { 11 };
    let above = TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let below = above.pos(Pos::new(HPos::Center, VPos::Top));
    let gap = (y_range.end - y_range.start) * 0.01;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let x = i as f64;
            if !v.is_finite() {
                Text::new("n/a".to_string(), (x, gap), above.clone())
            } else if *v >= 0.0 {
                Text::new(fmt_value(*v), (x, v + gap), above.clone())
            } else {
                Text::new(fmt_value(*v), (x, v - gap), below.clone())
            }
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// How the x axis of a bar plot is labelled.
enum BarNaming {
    /// Every bar by its name, cut to this many characters.
    Names(usize),
    /// Every `step`-th bar by its 0-based index (names would not be readable).
    Indices(usize),
}

/// Names when they fit (or there are few bars), indices every few bars otherwise.
fn bar_naming(bars: &[(String, f64)]) -> BarNaming {
    let n = bars.len().max(1);
    // ~700 px of axis, ~8 px per character at the label size.
    let fit = 700 / n / 8;
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
    if longest <= fit || n <= 12 {
        BarNaming::Names(fit.max(3))
    } else {
        let step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
            .into_iter()
            .find(|s| n.div_ceil(*s) <= 20)
            .unwrap_or(n.div_ceil(20));
        BarNaming::Indices(step)
    }
}

/// y range for bars: always includes 0, with head room for the value labels.
pub(super) fn bar_range(lo: f64, hi: f64) -> Range<f64> {
    let span = hi - lo;
    if !span.is_finite() {
        return lo..hi;
    }
    if span <= 0.0 {
        return 0.0..1.0;
    }
    let pad = span * 0.08;
    let lo = if lo < 0.0 { lo - pad } else { lo };
    let hi = if hi > 0.0 { hi + pad } else { hi };
    lo..hi
}
