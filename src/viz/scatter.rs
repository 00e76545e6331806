//! 2-D points coloured by class, in one or more panels side by side with one legend of
//! class names (the t-SNE figure of `pstl eval tsne`).

use super::{draw_err, text, write_png};
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// One panel: a title and points `(x, y, class)`.
#[derive(Debug, Clone)]
pub struct ScatterPanel {
    /// Panel title.
    pub title: String,
    /// Points and their classes.
    pub points: Vec<(f32, f32, usize)>,
}

/// Tableau's ten colours, then evenly spaced hues.
pub fn class_color(c: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match TAB10.get(c) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let hsl = HSLColor((c as f64 * 0.618_034) % 1.0, 0.65, 0.45);
            let rgba = hsl.to_rgba();
            RGBColor(rgba.0, rgba.1, rgba.2)
        }
    }
}

const PANEL: i32 = 520;
const LEGEND: i32 = 210;
const TOP: i32 = 40;

/// Draw `panels` side by side with a legend of `class_names` (class `c` is `class c`
/// when unnamed) as a PNG at `path`.
pub fn write_scatter(
    path: &Path,
    caption: &str,
    panels: &[ScatterPanel],
    class_names: &[String],
) -> Result<()> {
    let classes = panels
        .iter()
        .flat_map(|p| p.points.iter().map(|q| q.2 + 1))
        .max()
        .unwrap_or(0);
    let legend_h = TOP + 30 + 18 * classes as i32;
    let w = panels.len() as i32 * PANEL + LEGEND;
    let h = (TOP + PANEL + 10).max(legend_h);
    write_png(path, (w as u32, h as u32), |area| {
        text(area, caption, (10, 8), 18, &BLACK)?;
        for (i, panel) in panels.iter().enumerate() {
            draw_panel(area, panel, (i as i32 * PANEL, TOP))?;
        }
        let x = panels.len() as i32 * PANEL + 10;
        for c in 0..classes {
            let y = TOP + 30 + 18 * c as i32;
            let square = Rectangle::new([(x, y + 2), (x + 11, y + 13)], class_color(c).filled());
            area.draw(&square).map_err(draw_err)?;
            let name = match class_names.get(c) {
                Some(n) if !n.is_empty() => format!("{c}: {n}"),
                _ => format!("class {c}"),
            };
            text(area, &name, (x + 18, y), 13, &BLACK)?;
        }
        Ok(())
    })
    .with_context(|| format!("drawing {}", path.display()))
}

fn draw_panel(area: &super::Area, panel: &ScatterPanel, origin: (i32, i32)) -> Result<()> {
    let (x, y) = origin;
    let inner = PANEL - 40;
    let frame = Rectangle::new(
        [(x + 10, y + 24), (x + PANEL - 10, y + PANEL - 6)],
        BLACK.mix(0.3),
    );
    area.draw(&frame).map_err(draw_err)?;
    text(area, &panel.title, (x + 14, y + 2), 15, &BLACK)?;
    let finite = panel
        .points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for p in finite.clone() {
        (x0, x1, y0, y1) = (x0.min(p.0), x1.max(p.0), y0.min(p.1), y1.max(p.1));
    }
    let span = (x1 - x0).max(y1 - y0).max(1e-6);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let (px, py) = (x + PANEL / 2, y + 24 + (PANEL - 30) / 2);
    for p in finite {
        let u = px + ((p.0 - cx) / span * inner as f32).round() as i32;
        let v = py - ((p.1 - cy) / span * inner as f32).round() as i32;
        let dot = Circle::new((u, v), 3, class_color(p.2).mix(0.85).filled());
        area.draw(&dot).map_err(draw_err)?;
    }
    Ok(())
}
