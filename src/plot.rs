//! PNG plots of training curves, per-class scores and confusion matrices.
//!
//! Rendering uses `plotters`' bitmap backend with its `ab_glyph` text renderer and
//! DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`, license beside it), so
//! plots carry their text on any machine. Should registering it ever fail, the plots
//! are still drawn, only without text.
//!
//! Every plot is written atomically: it is rendered to a temporary `.tmp.png` file in
//! the same folder (the encoder picks PNG from the last extension) and then renamed
//! onto `path`, so a reader never sees a half-written file; the temporary file is
//! removed when anything fails.
//!
//! Non-finite values (NaN, ±inf) are skipped, empty inputs give an empty frame, and
//! degenerate ranges (a single point, constant values) are padded.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// Font family name the plots register and use.
const FONT: &str = "sans-serif";
/// DejaVu Sans (Bitstream Vera license, `assets/DejaVuSans.LICENSE`).
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const LINE_SIZE: (u32, u32) = (800, 500);
const BAR_SIZE: (u32, u32) = (800, 500);
const CONFUSION_SIZE: (u32, u32) = (700, 700);

const CAPTION_PT: u32 = 22;
const LABEL_PT: u32 = 14;
const DESC_PT: u32 = 16;

/// Series colours (the "tab10" palette), cycled when there are more series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Confusion-matrix heat map, white to dark blue (ColorBrewer "Blues").
const HEAT_STOPS: [(u8, u8, u8); 9] = [
    (255, 255, 255),
    (222, 235, 247),
    (198, 219, 239),
    (158, 202, 225),
    (107, 174, 214),
    (66, 146, 198),
    (33, 113, 181),
    (8, 81, 156),
    (8, 48, 107),
];
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);

/// Series with at most this many points also get a marker at every point.
const MARKER_MAX_POINTS: usize = 30;
/// Confusion matrices with at most this many classes get class indices on the axes.
const CONFUSION_MAX_TICKS: usize = 30;
/// Confusion matrices with at most this many classes get the value written in each cell.
const CONFUSION_MAX_ANNOTATED: usize = 12;
/// Bar plots with at most this many bars get the value written above each bar.
const BAR_MAX_ANNOTATED: usize = 25;

type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a line chart, one coloured line per `(name, points)` series, with a legend
/// for the named series. Points with a non-finite coordinate are skipped. With
/// `log_y` the y axis is logarithmic when every remaining y value is positive, and
/// linear otherwise. The image is 800x500.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<()> {
    let text = fonts_ready();
    write_atomic(path, LINE_SIZE, |root| {
        render_line(root, title, x_label, y_label, series, log_y, text)
    })
    .with_context(|| format!("line plot {}", path.display()))
}

/// Draws one bar per `(name, value)` from a zero baseline. Bars are named on the x
/// axis (shortened if need be); with more than 12 bars whose names do not fit, every
/// few bars are labelled with their 0-based index instead. Values are written above the bars when there
/// are at most 25. Non-finite values leave an empty slot (marked "n/a"). The image
/// is 800x500.
pub fn bar_plot(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<()> {
    let text = fonts_ready();
    write_atomic(path, BAR_SIZE, |root| {
        render_bar(root, title, y_label, bars, text)
    })
    .with_context(|| format!("bar plot {}", path.display()))
}

/// Draws a confusion matrix as a heat map (white to dark blue): `matrix[t][p]` counts
/// samples of true class `t` predicted as `p`; rows run top to bottom, "true" on the
/// y axis and "predicted" on the x axis. With `normalise_rows` each row is divided by
/// its sum (so colours show per-class recall), otherwise by the largest count. Class
/// indices label the axes when there are at most 30 classes, and the values are
/// written in the cells when there are at most 12. Ragged rows are padded with
/// zeros. The image is 700x700.
pub fn confusion_plot(
    path: &Path,
    title: &str,
    matrix: &[Vec<u64>],
    normalise_rows: bool,
) -> Result<()> {
    confusion_plot_named(path, title, matrix, normalise_rows, &[])
}

/// [`confusion_plot`] with class names: the y axis reads `index name` (names shortened
/// to 20 characters) when `names` is not empty; the x axis keeps the indices.
pub fn confusion_plot_named(
    path: &Path,
    title: &str,
    matrix: &[Vec<u64>],
    normalise_rows: bool,
    names: &[String],
) -> Result<()> {
    let text = fonts_ready();
    write_atomic(path, CONFUSION_SIZE, |root| {
        render_confusion(root, title, matrix, normalise_rows, names, text)
    })
    .with_context(|| format!("confusion plot {}", path.display()))
}

// ---------------------------------------------------------------------------------
// Fonts and atomic output

/// Registers the embedded font once per process; `true` when text can be drawn.
fn fonts_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok())
}

/// Renders with `draw` onto a white `size` canvas saved at a temporary path beside
/// `path` ([`crate::io::temp_beside`]; the folder must exist), then moves it onto `path`.
fn write_atomic<F>(path: &Path, size: (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(&Root) -> Result<()>,
{
    let tmp = crate::io::temp_beside(path)?;
    {
        let root = BitMapBackend::new(tmp.path(), size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present()
            .map_err(plot_err)
            .with_context(|| format!("writing {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}

/// Plotters' error types carry the backend error; keep just its message.
fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e}")
}

// ---------------------------------------------------------------------------------
// Line plot

#[allow(clippy::too_many_arguments)]
fn render_line(
    root: &Root,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
    text: bool,
) -> Result<()> {
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let pts = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (name.as_str(), pts)
        })
        .collect();
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

struct AxisText<'s> {
    x: &'s str,
    y: &'s str,
}

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

// ---------------------------------------------------------------------------------
// Bar plot

fn render_bar(
    root: &Root,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
    text: bool,
) -> Result<()> {
    let n = bars.len();
    let finite = bars.iter().map(|b| b.1).filter(|v| v.is_finite());
    let (lo, hi) = bounds(finite).unwrap_or((0.0, 0.0));
    let y_range = bar_range(lo.min(0.0), hi.max(0.0));
    let x_range = -0.5..(n.max(1) as f64 - 0.5);

    let mut builder = ChartBuilder::on(root);
    builder.margin(15).margin_right(25);
    if text {
        builder
            .caption(title, (FONT, CAPTION_PT))
            .x_label_area_size(45)
            .y_label_area_size(80);
    }
    let mut chart = builder
        .build_cartesian_2d(x_range, y_range.clone())
        .map_err(plot_err)?;

    let naming = bar_naming(bars);
    let x_fmt = |v: &f64| -> String {
        match (slot_index(*v, n), &naming) {
            (Some(i), BarNaming::Names(max_chars)) => shorten(&bars[i].0, *max_chars),
            (Some(i), BarNaming::Indices(step)) if i % step == 0 => i.to_string(),
            _ => String::new(),
        }
    };
    let y_fmt = linear_formatter(&y_range);
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
    mesh.draw().map_err(plot_err)?;
    frame(chart.plotting_area())?;

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
    if text && n <= BAR_MAX_ANNOTATED {
        let size = if n <= 12 { 13 } else { 11 };
        let above =
            TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
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
    }
    Ok(())
}

/// How the x axis of a bar plot is labelled.
enum BarNaming {
    /// Every bar by its name, cut to this many characters.
    Names(usize),
    /// Every `step`-th bar by its 0-based index (names would not be readable).
    Indices(usize),
}

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

/// The bar index a tick at `v` sits on, if it sits on one.
fn slot_index(v: f64, n: usize) -> Option<usize> {
    let r = v.round();
    ((v - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n).then_some(r as usize)
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('\u{2026}');
        out
    }
}

/// y range for bars: always includes 0, with head room for the value labels.
fn bar_range(lo: f64, hi: f64) -> Range<f64> {
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

// ---------------------------------------------------------------------------------
// Confusion matrix

fn render_confusion(
    root: &Root,
    title: &str,
    matrix: &[Vec<u64>],
    normalise_rows: bool,
    names: &[String],
    text: bool,
) -> Result<()> {
    let rows = matrix.len();
    let cols = matrix.iter().map(Vec::len).max().unwrap_or(0);
    let (ny, nx) = (rows.max(1), cols.max(1));
    let max_count = matrix.iter().flatten().copied().max().unwrap_or(0);
    // Cell value shown / coloured: fraction of its row, or of the largest count.
    let share = |t: usize, p: usize| -> f64 {
        let c = matrix[t].get(p).copied().unwrap_or(0) as f64;
        let denom = if normalise_rows {
            matrix[t].iter().map(|&v| v as f64).sum::<f64>()
        } else {
            max_count as f64
        };
        if denom > 0.0 {
            c / denom
        } else {
            0.0
        }
    };

    let mut builder = ChartBuilder::on(root);
    builder.margin(15).margin_right(30);
    if text {
        builder
            .caption(title, (FONT, CAPTION_PT))
            .x_label_area_size(55)
            .y_label_area_size(if names.is_empty() { 60 } else { 190 });
    }
    // Cell (t, p) is centred on (p, ny - 1 - t): the first row is drawn on top.
    let mut chart = builder
        .build_cartesian_2d(-0.5..(nx as f64 - 0.5), -0.5..(ny as f64 - 0.5))
        .map_err(plot_err)?;

    let x_fmt = |v: &f64| {
        slot_index(*v, nx)
            .map(|i| i.to_string())
            .unwrap_or_default()
    };
    let y_fmt = |v: &f64| {
        slot_index(*v, ny)
            .map(|i| {
                let t = ny - 1 - i;
                match names.get(t) {
                    Some(name) => format!("{t} {}", shorten(name, 20)),
                    None => t.to_string(),
                }
            })
            .unwrap_or_default()
    };
    let ticks = nx.max(ny) <= CONFUSION_MAX_TICKS;
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh()
        .x_labels(if ticks { nx } else { 0 })
        .y_labels(if ticks { ny } else { 0 })
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt);
    if text {
        mesh.x_desc("predicted")
            .y_desc("true")
            .label_style((FONT, LABEL_PT))
            .axis_desc_style((FONT, DESC_PT));
    }
    mesh.draw().map_err(plot_err)?;

    let cells = (0..rows).flat_map(|t| (0..cols).map(move |p| (t, p)));
    chart
        .draw_series(cells.clone().map(|(t, p)| {
            let (x, y) = (p as f64, (ny - 1 - t) as f64);
            Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                heat(share(t, p)).filled(),
            )
        }))
        .map_err(plot_err)?;
    frame(chart.plotting_area())?;

    if text && rows > 0 && nx.max(ny) <= CONFUSION_MAX_ANNOTATED {
        let (w, h) = chart.plotting_area().dim_in_pixel();
        let cell_px = (w as usize / nx).min(h as usize / ny);
        let size = (cell_px / 4).clamp(9, 16) as u32;
        let centred = Pos::new(HPos::Center, VPos::Center);
        chart
            .draw_series(cells.map(|(t, p)| {
                let s = share(t, p);
                let label = if normalise_rows {
                    format!("{s:.2}")
                } else {
                    matrix[t].get(p).copied().unwrap_or(0).to_string()
                };
                let color = if s > 0.6 { &WHITE } else { &BLACK };
                let style = TextStyle::from((FONT, size).into_font())
                    .color(color)
                    .pos(centred);
                Text::new(label, (p as f64, (ny - 1 - t) as f64), style)
            }))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// White (0) to dark blue (1), through ColorBrewer's "Blues".
fn heat(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (HEAT_STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(HEAT_STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (HEAT_STOPS[i], HEAT_STOPS[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

// ---------------------------------------------------------------------------------
// Shared helpers

/// Thin border around the plotting area (the mesh only draws the labelled axes).
fn frame<X: Ranged, Y: Ranged>(area: &DrawingArea<BitMapBackend, Cartesian2d<X, Y>>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let rect = Rectangle::new([(0, 0), (w - 1, h - 1)], BLACK.stroke_width(1));
    area.strip_coord_spec().draw(&rect).map_err(plot_err)
}

/// Minimum and maximum of finite values, `None` when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Half-width used to widen a degenerate (constant) range around `v`.
fn flat_pad(v: f64) -> f64 {
    if v == 0.0 {
        1.0
    } else {
        (v.abs() * 0.1).max(f64::MIN_POSITIVE)
    }
}

fn is_flat(lo: f64, hi: f64) -> bool {
    hi - lo <= 1e-12 * lo.abs().max(hi.abs())
}

/// x range: exact data extent, widened only when degenerate.
fn pad_x(lo: f64, hi: f64) -> Range<f64> {
    if is_flat(lo, hi) {
        let d = flat_pad(lo);
        clamp_range(lo - d, hi + d)
    } else {
        clamp_range(lo, hi)
    }
}

/// Linear y range: 5% margins, widened when degenerate.
fn pad_linear(lo: f64, hi: f64) -> Range<f64> {
    if is_flat(lo, hi) {
        let d = flat_pad(lo);
        clamp_range(lo - d, hi + d)
    } else {
        let m = (hi / 2.0 - lo / 2.0) * 0.1;
        clamp_range(lo - m, hi + m)
    }
}

/// Log y range (`0 < lo <= hi`): snapped outwards to powers of ten so that the
/// axis always has labelled decades.
fn pad_log(lo: f64, hi: f64) -> Range<f64> {
    let mut a = 10f64.powf(lo.log10().floor());
    let mut b = 10f64.powf(hi.log10().ceil());
    if a.is_nan() || a <= 0.0 {
        a = lo;
    }
    if !b.is_finite() {
        b = hi;
    }
    if is_flat(a, b) {
        a /= 10.0;
        b *= 10.0;
    }
    // Nudge the ends outwards so that rounding in plotters' key-point search still
    // labels the end decades.
    (a * (1.0 - 1e-9)).max(f64::MIN_POSITIVE)..(b * (1.0 + 1e-9)).min(f64::MAX)
}

fn clamp_range(lo: f64, hi: f64) -> Range<f64> {
    lo.max(-f64::MAX)..hi.min(f64::MAX)
}

/// Tick formatter whose decimals follow the range's span, so that neighbouring
/// ticks stay distinct.
fn linear_formatter(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let span = (range.end - range.start).abs();
    let mag = range.start.abs().max(range.end.abs());
    let sci = mag >= 1e6 || (mag > 0.0 && mag < 1e-3);
    let decimals = if span > 0.0 && span.is_finite() {
        ((-(span / 10.0).log10()).ceil() + 1.0).clamp(0.0, 10.0) as usize
    } else {
        2
    };
    move |v: &f64| {
        if sci {
            fmt_sci(*v)
        } else {
            trim_zeros(format!("{v:.decimals$}"))
        }
    }
}

/// Log-axis ticks: powers of ten, plus 2x and 5x when the range spans at most two
/// decades; a few significant digits, scientific when very large or small.
fn log_formatter(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let show_125 = (range.end / range.start).log10() <= 2.0 + 1e-6;
    // plotters emits each decade twice (as 10 x the previous one and as the next
    // one), in ascending order; label it once.
    let last = std::cell::Cell::new(f64::NAN);
    move |v: &f64| {
        let a = v.abs();
        if a == 0.0 || !a.is_finite() || (a / last.get() - 1.0).abs() < 1e-6 {
            return String::new();
        }
        let mantissa = (a / 10f64.powf(a.log10().floor())).round() as u32;
        let wanted =
            mantissa == 1 || mantissa == 10 || (show_125 && (mantissa == 2 || mantissa == 5));
        if wanted {
            last.set(a);
            fmt_log_tick(*v)
        } else {
            String::new()
        }
    }
}

fn fmt_log_tick(v: f64) -> String {
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else {
        let decimals = (3.0 - a.log10().floor()).clamp(0.0, 8.0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    }
}

/// A value written on a bar: about three significant digits.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        fmt_sci(v)
    } else {
        let decimals = (2.0 - a.log10().floor()).clamp(0.0, 6.0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    }
}

/// Scientific notation with up to three significant digits: `1.25e7`, `2e-4`, `0`.
fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa.to_owned())),
        None => s,
    }
}

fn trim_zeros(s: String) -> String {
    if !s.contains('.') {
        return s;
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    //! The no-font path cannot be reached from outside once a font is registered,
    //! so it is exercised here through the renderers directly.
    use super::*;
    use std::path::PathBuf;

    fn scratch_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pstl-plot-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn renders_without_text() {
        let dir = scratch_dir();
        let series = vec![
            (
                "a".to_string(),
                vec![(0.0, 1.0), (1.0, 0.5), (2.0, f64::NAN)],
            ),
            ("b".to_string(), vec![(0.0, 2.0)]),
        ];
        let p = dir.join("line.png");
        write_atomic(&p, LINE_SIZE, |r| {
            render_line(r, "t", "x", "y", &series, true, false)
        })
        .unwrap();
        assert!(p.exists());
        let p = dir.join("bar.png");
        let bars = vec![("a".to_string(), 1.0), ("b".to_string(), -2.0)];
        write_atomic(&p, BAR_SIZE, |r| render_bar(r, "t", "y", &bars, false)).unwrap();
        assert!(p.exists());
        let p = dir.join("cm.png");
        let m = vec![vec![3, 1], vec![0, 4]];
        write_atomic(&p, CONFUSION_SIZE, |r| {
            render_confusion(r, "t", &m, true, &[], false)
        })
        .unwrap();
        assert!(p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ranges_are_padded() {
        assert_eq!(pad_linear(2.0, 2.0), 1.8..2.2);
        assert_eq!(pad_linear(0.0, 0.0), -1.0..1.0);
        let r = pad_log(3.0, 3.0);
        assert!((r.start - 1.0).abs() < 1e-6 && (r.end - 10.0).abs() < 1e-6);
        let r = pad_log(1.0, 1.0);
        assert!((r.start - 0.1).abs() < 1e-6 && (r.end - 10.0).abs() < 1e-6);
        assert_eq!(bar_range(0.0, 0.0), 0.0..1.0);
    }

    #[test]
    fn tick_formats() {
        let f = linear_formatter(&(0.0..100.0));
        assert_eq!(f(&20.0), "20");
        let f = linear_formatter(&(0.0..1.0));
        assert_eq!(f(&0.05), "0.05");
        assert_eq!(fmt_log_tick(0.03), "0.03");
        assert_eq!(fmt_log_tick(1e-5), "1e-5");
        let f = log_formatter(&(0.1..10.0));
        assert_eq!(f(&0.2), "0.2");
        assert_eq!(f(&0.3), "");
        assert_eq!(f(&1.0), "1");
        assert_eq!(fmt_value(0.8767), "0.877");
        assert_eq!(fmt_value(1234.6), "1235");
        assert_eq!(fmt_value(1e-4), "1e-4");
        assert_eq!(fmt_sci(1.25e7), "1.25e7");
        assert_eq!(fmt_sci(-2e-4), "-2e-4");
        assert_eq!(fmt_sci(0.0), "0");
        assert_eq!(shorten("abcdef", 4), "abc\u{2026}");
    }
}
