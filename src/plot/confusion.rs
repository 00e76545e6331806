//! Confusion matrices ([`super::confusion_plot_named`]): a heat map, white to dark
//! blue, true classes top to bottom on y and predictions on x, with class indices (and
//! names) on the axes and the values in the cells when the matrix is small.

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::scale::{shorten, slot_index};
use super::{frame, plot_err, Chart, Root, CAPTION_PT, DESC_PT, FONT, LABEL_PT};

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
/// Confusion matrices with at most this many classes get class indices on the axes.
const CONFUSION_MAX_TICKS: usize = 30;
/// Confusion matrices with at most this many classes get the value written in each cell.
const CONFUSION_MAX_ANNOTATED: usize = 12;

/// Draws the confusion matrix of [`super::confusion_plot_named`] on `root`; `text` is
/// false when no font could be registered.
pub(super) fn render_confusion(
    root: &Root,
    title: &str,
    matrix: &[Vec<u64>],
    normalise_rows: bool,
    names: &[String],
    text: bool,
) -> Result<()> {
    let m = Cells::new(matrix, normalise_rows);
    let mut chart = confusion_chart(root, title, &m, !names.is_empty(), text)?;
    confusion_axes(&mut chart, &m, names, text)?;
    draw_cells(&mut chart, &m)?;
    frame(chart.plotting_area())?;
    if text && m.rows > 0 && m.nx.max(m.ny) <= CONFUSION_MAX_ANNOTATED {
        annotate_cells(&mut chart, &m)?;
    }
    Ok(())
}

/// A (possibly ragged) matrix with its extent and how its cells are scaled.
struct Cells<'m> {
    matrix: &'m [Vec<u64>],
    normalise_rows: bool,
    /// Rows and the longest row's length.
    rows: usize,
    cols: usize,
    /// Slots on the x and y axes (at least one each).
    nx: usize,
    ny: usize,
    max_count: u64,
}

impl<'m> Cells<'m> {
    fn new(matrix: &'m [Vec<u64>], normalise_rows: bool) -> Self {
        let rows = matrix.len();
        let cols = matrix.iter().map(Vec::len).max().unwrap_or(0);
        Cells {
            matrix,
            normalise_rows,
            rows,
            cols,
            nx: cols.max(1),
            ny: rows.max(1),
            max_count: matrix.iter().flatten().copied().max().unwrap_or(0),
        }
    }

    /// The count of cell (t, p) (0 past the end of a ragged row).
    fn count(&self, t: usize, p: usize) -> u64 {
        self.matrix[t].get(p).copied().unwrap_or(0)
    }

    /// Cell value shown / coloured: fraction of its row, or of the largest count.
    fn share(&self, t: usize, p: usize) -> f64 {
        let c = self.count(t, p) as f64;
        let denom = if self.normalise_rows {
            self.matrix[t].iter().map(|&v| v as f64).sum::<f64>()
        } else {
            self.max_count as f64
        };
        if denom > 0.0 {
            c / denom
        } else {
            0.0
        }
    }

    /// Every (true, predicted) cell, row by row.
    fn cells(&self) -> impl Iterator<Item = (usize, usize)> + Clone {
        let cols = self.cols;
        (0..self.rows).flat_map(move |t| (0..cols).map(move |p| (t, p)))
    }

    /// Cell (t, p) is centred on (p, ny - 1 - t): the first row is drawn on top.
    fn centre(&self, t: usize, p: usize) -> (f64, f64) {
        (p as f64, (self.ny - 1 - t) as f64)
    }
}

/// The chart: one unit square per cell; the y label area is wider for class names.
fn confusion_chart<'a, 'b>(
    root: &'a Root<'b>,
    title: &str,
    m: &Cells,
    named: bool,
    text: bool,
) -> Result<Chart<'a, 'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.margin(15).margin_right(30);
    if text {
        builder
            .caption(title, (FONT, CAPTION_PT))
            .x_label_area_size(55)
            .y_label_area_size(if named { 190 } else { 60 });
    }
    builder
        .build_cartesian_2d(-0.5..(m.nx as f64 - 0.5), -0.5..(m.ny as f64 - 0.5))
        .map_err(plot_err)
}

/// The axes: "predicted" class indices on x, "true" indices (and names) on y, ticks
/// only when there are few classes.
fn confusion_axes(chart: &mut Chart, m: &Cells, names: &[String], text: bool) -> Result<()> {
    let (nx, ny) = (m.nx, m.ny);
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
    mesh.draw().map_err(plot_err)
}

/// One square per cell, coloured by its share.
fn draw_cells(chart: &mut Chart, m: &Cells) -> Result<()> {
    chart
        .draw_series(m.cells().map(|(t, p)| {
            let (x, y) = m.centre(t, p);
            Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                heat(m.share(t, p)).filled(),
            )
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// The value of each cell (its share, or its count) written in it, white on dark cells.
fn annotate_cells(chart: &mut Chart, m: &Cells) -> Result<()> {
    let (w, h) = chart.plotting_area().dim_in_pixel();
    let cell_px = (w as usize / m.nx).min(h as usize / m.ny);
    let size = (cell_px / 4).clamp(9, 16) as u32;
    let centred = Pos::new(HPos::Center, VPos::Center);
    chart
        .draw_series(m.cells().map(|(t, p)| {
            let s = m.share(t, p);
            let label = if m.normalise_rows {
                format!("{s:.2}")
            } else {
                m.count(t, p).to_string()
            };
            let color = if s > 0.6 { &WHITE } else { &BLACK };
            let style = TextStyle::from((FONT, size).into_font())
                .color(color)
                .pos(centred);
            Text::new(label, m.centre(t, p), style)
        }))
        .map_err(plot_err)?;
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
