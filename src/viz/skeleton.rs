//! A skeleton sample and its views drawn over a few frames: one row per view (title at
//! the left), one panel per chosen frame, bones and joints of every person present.
//! Under a view with a frame mask, a strip of one cell per frame (red: dropped); the
//! panels of dropped frames have a red border and a grey skeleton. Under a view with a
//! joint mask, a strip of one cell per joint (red: removed), and the removed joints are
//! red dots in every panel. [`Geometry`] says where each of these lies, so a test can
//! read the marks back from the pixels. [`write_gif`] animates all frames.

use super::{draw_err, render_rgb, text, write_png, Area, KEPT, MARK};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Points per frame, person, joint: `frames[t][m][v] = (x, y)`.
pub type Frames = Vec<Vec<Vec<(f32, f32)>>>;

/// One view of a sample as 2-D points, `frames[t][m][v] = (x, y)` (y up); a person
/// whose joints are all zero in a frame is absent there.
#[derive(Debug, Clone)]
pub struct View {
    /// Row title (`\n` splits lines).
    pub title: String,
    /// Points per frame, person, joint.
    pub frames: Frames,
    /// A frame mask applies: draw the frame strip (with [`View::dropped_frames`]).
    pub frame_mask: bool,
    /// Frames the mask dropped.
    pub dropped_frames: Vec<usize>,
    /// A joint mask applies: draw the joint strip (with [`View::dropped_joints`]).
    pub joint_mask: bool,
    /// Joints the mask removed (every person).
    pub dropped_joints: Vec<usize>,
}

impl View {
    /// A view without masks.
    pub fn plain(title: &str, frames: Frames) -> Self {
        View {
            title: title.into(),
            frames,
            frame_mask: false,
            dropped_frames: Vec::new(),
            joint_mask: false,
            dropped_joints: Vec::new(),
        }
    }

    fn joints(&self) -> usize {
        self.frames
            .first()
            .and_then(|f| f.first())
            .map_or(0, Vec::len)
    }

    /// `(x0, x1, y0, y1)` of the persons present in any frame (padded when flat).
    pub fn bbox(&self) -> (f32, f32, f32, f32) {
        let mut b = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for person in self.frames.iter().flatten().filter(|p| present(p)) {
            for &(x, y) in person
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
            {
                b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
            }
        }
        if b.0 > b.1 {
            return (-1.0, 1.0, -1.0, 1.0);
        }
        let pad = |lo: f32, hi: f32| {
            if hi - lo < 1e-6 {
                (lo - 0.5, hi + 0.5)
            } else {
                (lo, hi)
            }
        };
        let (x0, x1) = pad(b.0, b.1);
        let (y0, y1) = pad(b.2, b.3);
        (x0, x1, y0, y1)
    }
}

/// Whether a person is there (any non-zero joint).
fn present(person: &[(f32, f32)]) -> bool {
    person.iter().any(|&(x, y)| x != 0.0 || y != 0.0)
}

/// Rows of views at the chosen frames.
#[derive(Debug, Clone)]
pub struct Sheet {
    /// Caption.
    pub title: String,
    /// One row each.
    pub views: Vec<View>,
    /// The frames drawn, one column each.
    pub columns: Vec<usize>,
    /// Bones as joint pairs.
    pub bones: Vec<(usize, usize)>,
}

/// Where the parts of a [`Sheet`] lie, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Panel side.
    pub panel: i32,
    /// Width of the row titles.
    pub left: i32,
    /// Height of the caption and column headings.
    pub top: i32,
    /// Height of a mask strip (below each row's panels).
    pub strip: i32,
    rows: usize,
    cols: usize,
    frames: usize,
    joints: usize,
}

const MARGIN: i32 = 10;
const PERSON: [RGBColor; 2] = [RGBColor(40, 90, 200), RGBColor(20, 150, 80)];
const FADED: RGBColor = RGBColor(185, 185, 185);

impl Geometry {
    /// The layout of `sheet`.
    pub fn of(sheet: &Sheet) -> Self {
        let first = sheet.views.first();
        Geometry {
            panel: 150,
            left: 172,
            top: 56,
            strip: 18,
            rows: sheet.views.len(),
            cols: sheet.columns.len(),
            frames: first.map_or(0, |v| v.frames.len()),
            joints: first.map_or(0, View::joints),
        }
    }
    /// Canvas size.
    pub fn size(&self) -> (u32, u32) {
        let w = self.left + self.cols as i32 * self.panel + MARGIN;
        let h = self.top + self.rows as i32 * (self.panel + self.strip + 8) + MARGIN;
        (w as u32, h as u32)
    }
    /// Top left corner of the panel of `row`, `col`.
    pub fn panel_origin(&self, row: usize, col: usize) -> (i32, i32) {
        let y = self.top + row as i32 * (self.panel + self.strip + 8);
        (self.left + col as i32 * self.panel, y)
    }
    fn strip_span(&self, row: usize) -> (i32, i32, i32) {
        let (x, y) = self.panel_origin(row, 0);
        (x, y + self.panel + 3, self.cols as i32 * self.panel)
    }
    fn cell(&self, row: usize, i: usize, n: usize) -> (i32, i32, i32, i32) {
        let (x, y, w) = self.strip_span(row);
        let x0 = x + (i as f64 * w as f64 / n as f64).round() as i32;
        let x1 = x + ((i + 1) as f64 * w as f64 / n as f64).round() as i32;
        (x0, y, x1 - 1, y + self.strip - 4)
    }
    /// Centre of frame `t`'s cell in the strip of `row`.
    pub fn frame_cell(&self, row: usize, t: usize) -> (i32, i32) {
        let (x0, y0, x1, y1) = self.cell(row, t, self.frames);
        ((x0 + x1) / 2, (y0 + y1) / 2)
    }
    /// Centre of joint `v`'s cell in the strip of `row`.
    pub fn joint_cell(&self, row: usize, v: usize) -> (i32, i32) {
        let (x0, y0, x1, y1) = self.cell(row, v, self.joints);
        ((x0 + x1) / 2, (y0 + y1) / 2)
    }
    /// Pixel of point `p` of a view with bounding box `bbox` in the panel at `origin`.
    pub fn point(
        &self,
        origin: (i32, i32),
        bbox: (f32, f32, f32, f32),
        p: (f32, f32),
    ) -> (i32, i32) {
        let inner = (self.panel - 2 * MARGIN) as f32;
        let scale = inner / (bbox.1 - bbox.0).max(bbox.3 - bbox.2);
        let cx = (bbox.0 + bbox.1) / 2.0;
        let cy = (bbox.2 + bbox.3) / 2.0;
        let half = self.panel as f32 / 2.0;
        let x = origin.0 as f32 + half + (p.0 - cx) * scale;
        let y = origin.1 as f32 + half - (p.1 - cy) * scale;
        (x.round() as i32, y.round() as i32)
    }
}

/// Draw one frame of a view into the panel at `origin`.
fn draw_panel(
    area: &Area,
    g: &Geometry,
    view: &View,
    bbox: (f32, f32, f32, f32),
    bones: &[(usize, usize)],
    origin: (i32, i32),
    t: usize,
) -> Result<()> {
    let dropped = view.dropped_frames.contains(&t);
    let (x, y) = origin;
    let far = (x + g.panel - 1, y + g.panel - 1);
    let border = if dropped { MARK } else { FADED };
    let width = if dropped { 3 } else { 1 };
    for i in 0..width {
        let r = Rectangle::new(
            [(x + i, y + i), (far.0 - i, far.1 - i)],
            border.stroke_width(1),
        );
        area.draw(&r).map_err(draw_err)?;
    }
    let Some(persons) = view.frames.get(t) else {
        return Ok(());
    };
    for (m, person) in persons.iter().enumerate().filter(|(_, p)| present(p)) {
        let color = if dropped {
            FADED
        } else {
            PERSON[m % PERSON.len()]
        };
        let px: Vec<(i32, i32)> = person.iter().map(|&p| g.point(origin, bbox, p)).collect();
        for &(a, b) in bones {
            if let (Some(&pa), Some(&pb)) = (px.get(a), px.get(b)) {
                area.draw(&PathElement::new(vec![pa, pb], color.stroke_width(2)))
                    .map_err(draw_err)?;
            }
        }
        for &p in &px {
            area.draw(&Circle::new(p, 2, color.filled()))
                .map_err(draw_err)?;
        }
        for &v in &view.dropped_joints {
            if let Some(&p) = px.get(v) {
                area.draw(&Circle::new(p, 4, MARK.filled()))
                    .map_err(draw_err)?;
            }
        }
    }
    Ok(())
}

/// The strip under `row`: one cell per frame (frame mask) or per joint (joint mask).
fn draw_strip(area: &Area, g: &Geometry, row: usize, view: &View) -> Result<()> {
    let (n, marked): (usize, &[usize]) = match (view.frame_mask, view.joint_mask) {
        (true, _) => (g.frames, &view.dropped_frames),
        (false, true) => (g.joints, &view.dropped_joints),
        (false, false) => return Ok(()),
    };
    for i in 0..n {
        let (x0, y0, x1, y1) = g.cell(row, i, n);
        let color = if marked.contains(&i) { MARK } else { KEPT };
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled()))
            .map_err(draw_err)?;
    }
    let what = if view.frame_mask { "frames" } else { "joints" };
    let (x, y, _) = g.strip_span(row);
    text(area, what, (x - 50, y), 12, &BLACK)
}

fn check(sheet: &Sheet) -> Result<()> {
    let Some(first) = sheet.views.first() else {
        bail!("nothing to draw: no views");
    };
    let t = first.frames.len();
    if t == 0 || sheet.columns.iter().any(|&c| c >= t) {
        bail!("frames {:?} are not all below {t}", sheet.columns);
    }
    if sheet.views.iter().any(|v| v.frames.len() != t) {
        bail!("the views have different numbers of frames");
    }
    Ok(())
}

/// Draw `sheet` as a PNG at `path`; returns its geometry.
pub fn write_sheet(path: &Path, sheet: &Sheet) -> Result<Geometry> {
    check(sheet)?;
    let g = Geometry::of(sheet);
    write_png(path, g.size(), |area| {
        text(area, &sheet.title, (MARGIN, 8), 18, &BLACK)?;
        for (col, &t) in sheet.columns.iter().enumerate() {
            let (x, _) = g.panel_origin(0, col);
            text(
                area,
                &format!("frame {t}"),
                (x + 45, g.top - 20),
                14,
                &BLACK,
            )?;
        }
        for (row, view) in sheet.views.iter().enumerate() {
            let bbox = view.bbox();
            let (_, y) = g.panel_origin(row, 0);
            for (i, line) in view.title.lines().enumerate() {
                text(area, line, (MARGIN, y + 50 + 18 * i as i32), 14, &BLACK)?;
            }
            for (col, &t) in sheet.columns.iter().enumerate() {
                draw_panel(
                    area,
                    &g,
                    view,
                    bbox,
                    &sheet.bones,
                    g.panel_origin(row, col),
                    t,
                )?;
            }
            draw_strip(area, &g, row, view)?;
        }
        Ok(())
    })
    .with_context(|| format!("drawing {}", path.display()))?;
    Ok(g)
}

/// All frames of the views side by side as an animated GIF at `path` (8 frames/s).
pub fn write_gif(path: &Path, sheet: &Sheet) -> Result<()> {
    check(sheet)?;
    let frames = sheet.views[0].frames.len();
    let one = Sheet {
        columns: vec![0],
        ..sheet.clone()
    };
    let g = Geometry {
        top: 30,
        ..Geometry::of(&one)
    };
    let n = sheet.views.len() as i32;
    let size = ((n * g.panel) as u32, (g.top + g.panel) as u32);
    let bboxes: Vec<_> = sheet.views.iter().map(View::bbox).collect();
    crate::io::atomic_write_with(path, |tmp| {
        let file = std::fs::File::create(tmp)?;
        let mut enc = gif::Encoder::new(file, size.0 as u16, size.1 as u16, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for t in 0..frames {
            let rgb = render_rgb(size, |area| {
                area.fill(&WHITE).map_err(draw_err)?;
                for (i, view) in sheet.views.iter().enumerate() {
                    let origin = (i as i32 * g.panel, g.top);
                    let title = view.title.lines().next().unwrap_or("");
                    text(area, title, (origin.0 + 6, 4), 13, &BLACK)?;
                    draw_panel(area, &g, view, bboxes[i], &sheet.bones, origin, t)?;
                }
                text(area, &format!("{t}"), (size.0 as i32 - 26, 4), 13, &BLACK)
            })?;
            let mut frame = gif::Frame::from_rgb_speed(size.0 as u16, size.1 as u16, &rgb, 20);
            frame.delay = 12;
            enc.write_frame(&frame)?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}
