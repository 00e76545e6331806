//! Pictures of what the model sees and learns: a skeleton sample and its PSTL views
//! over a few frames with the masks marked ([`skeleton`], a PNG sheet and an animated
//! GIF), and 2-D feature maps coloured by class ([`scatter`], the t-SNE figure).
//!
//! Drawing only: callers pass plain coordinates, bones and marks (the views and the
//! t-SNE are computed in `pstl show` and `pstl eval tsne`). Rendering uses `plotters`'
//! bitmap backend with DejaVu Sans embedded (as [`crate::plot`] does); PNGs are written
//! to a temporary name and renamed ([`crate::io::temp_beside`]).

pub mod scatter;
pub mod skeleton;

use crate::plot::{fonts_ready, FONT};
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// The colour of everything a mask removed.
pub const MARK: RGBColor = RGBColor(220, 30, 30);
/// A kept cell of a mask strip.
pub const KEPT: RGBColor = RGBColor(215, 215, 215);

/// Plotters' error types carry the backend error; keep its message.
fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Text at `(x, y)` (top left) in `size` points; nothing when no font could be loaded.
fn text(area: &Area, s: &str, pos: (i32, i32), size: u32, color: &RGBColor) -> Result<()> {
    if !fonts_ready() {
        return Ok(());
    }
    let style = TextStyle::from((FONT, size).into_font()).color(color);
    area.draw(&Text::new(s.to_string(), pos, style))
        .map_err(draw_err)
}

/// Render with `draw` onto a white `size` canvas and write it as PNG at `path`
/// (through a temporary file beside it).
fn write_png<F>(path: &Path, size: (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(&Area) -> Result<()>,
{
    let tmp = crate::io::temp_beside(path)?;
    {
        let root = BitMapBackend::new(tmp.path(), size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present()
            .map_err(draw_err)
            .with_context(|| format!("writing {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}

/// Render with `draw` onto a white `size` canvas in memory: RGB bytes, row-major.
fn render_rgb<F>(size: (u32, u32), draw: F) -> Result<Vec<u8>>
where
    F: FnOnce(&Area) -> Result<()>,
{
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(buf)
}
