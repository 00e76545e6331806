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
//!
//! The public functions are here with the shared style and output; each kind of plot
//! is drawn in its own module (`line`, `bar`, `confusion`), and `scale` holds the axis
//! ranges and the text of ticks and values.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

mod bar;
mod confusion;
mod line;
mod scale;

use bar::render_bar;
use confusion::render_confusion;
use line::render_line;

/// Font family name the plots (and `crate::viz`) register and use.
pub(crate) const FONT: &str = "sans-serif";
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
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);

/// The white canvas of one plot.
type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart with linear f64 axes (`'a`: the borrow of the canvas, `'b`: its backend's).
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

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
pub(crate) fn fonts_ready() -> bool {
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
// Shared drawing

/// Thin border around the plotting area (the mesh only draws the labelled axes).
fn frame<X: Ranged, Y: Ranged>(area: &DrawingArea<BitMapBackend, Cartesian2d<X, Y>>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let rect = Rectangle::new([(0, 0), (w - 1, h - 1)], BLACK.stroke_width(1));
    area.strip_coord_spec().draw(&rect).map_err(plot_err)
}

#[cfg(test)]
mod tests {
    //! The no-font path cannot be reached from outside once a font is registered,
    //! so it is exercised here through the renderers directly.
    use super::bar::bar_range;
    use super::scale::{
        fmt_log_tick, fmt_sci, fmt_value, linear_formatter, log_formatter, pad_linear, pad_log,
        shorten,
    };
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
