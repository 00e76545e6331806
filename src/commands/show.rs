//! `pstl show`: one sample of a store drawn as a skeleton over a few frames, beside
//! the three PSTL views that pretraining builds from it ([`crate::method::pstl_views`]
//! with the RNG of a pretraining step): the augmented anchor, the MATM view with the
//! dropped frames marked and the CSM view with the removed joints marked. Writes
//! `sheet.png`, `views.gif` (every frame) and `marks.json` (what was marked).

use super::print_summary;
use crate::cli::{GlobalOpts, ShowArgs};
use crate::config::Config;
use crate::data::store::Store;
use crate::model::Layout;
use crate::rng::{step_seed, PstlRng};
use crate::viz::skeleton::{Frames, Sheet, View};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde_json::json;
use std::path::Path;
use tch::{Kind, Tensor};

/// The sample and what the masks of step `step` removed from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Marks {
    /// Sample name in the store.
    pub name: String,
    /// Its label.
    pub label: i64,
    /// `run.seed`.
    pub seed: u64,
    /// The pretraining step whose RNG drew the views.
    pub step: u64,
    /// Frames of the augmented temporal view that MATM dropped.
    pub dropped_frames: Vec<usize>,
    /// The CSM draw as drawn (may repeat a joint).
    pub csm_draw: Vec<usize>,
    /// The joints CSM removed (sorted, once each).
    pub dropped_joints: Vec<usize>,
}

/// `(1, C, T, V, M)` -> `frames[t][m][v] = (x, y)`.
fn to_frames(x: &Tensor) -> Result<Frames> {
    let s = x.size();
    let (t, v, m) = (s[2] as usize, s[3] as usize, s[4] as usize);
    let data: Vec<f32> = Vec::try_from(x.to_kind(Kind::Float).contiguous().flatten(0, -1))?;
    let at = |c: usize, ti: usize, vi: usize, mi: usize| data[((c * t + ti) * v + vi) * m + mi];
    Ok((0..t)
        .map(|ti| {
            (0..m)
                .map(|mi| {
                    (0..v)
                        .map(|vi| (at(0, ti, vi, mi), at(1, ti, vi, mi)))
                        .collect()
                })
                .collect()
        })
        .collect())
}

/// One sample of `split` as a `(1, C, T, V, M)` tensor, its name and label; and the
/// store's layout.
fn read_sample(store: &Path, split: &str, index: usize) -> Result<(Tensor, String, i64, Layout)> {
    let st = Store::open(store).with_context(|| format!("opening {}", store.display()))?;
    let meta = st.meta().clone();
    let Some(layout) = Layout::by_name(&meta.layout) else {
        bail!("{}: unknown layout `{}`", store.display(), meta.layout);
    };
    let n = st.len(split)?;
    if index >= n {
        bail!(
            "--index {index}: the {split} split of {} has {n} samples (0..{n})",
            store.display()
        );
    }
    let s = st.read_indices(split, &[index])?;
    let dims: Vec<i64> = std::iter::once(1)
        .chain(meta.sample_shape().iter().map(|&d| d as i64))
        .collect();
    let x = Tensor::from_slice(&s.x).view(dims.as_slice());
    Ok((x, s.names[0].clone(), s.y[0], layout))
}

/// The sheet of sample `index` of `split` in `store`, with the views of pretraining
/// step `step` under `cfg` (joint stream), drawn at `columns` evenly spaced frames.
pub fn build_sheet(
    store: &Path,
    split: &str,
    index: usize,
    cfg: &Config,
    step: u64,
    columns: usize,
) -> Result<(Sheet, Marks)> {
    let (x, name, label, layout) = read_sample(store, split, index)?;
    let mut cfg = cfg.clone();
    cfg.data.stream = crate::stream::Stream::Joint;
    check_matm_frames(&cfg, &x, store)?;
    let d = draw_views(&x, &cfg, &layout, step)?;
    let class = crate::data::classes::for_store(store)
        .get(label as usize)
        .cloned()
        .unwrap_or_default();
    let heading = format!("sample {index}\n{name}\nclass {label}\n{class}");
    let sheet = Sheet {
        title: format!(
            "{} ({split} {index}): the PSTL views of pretraining step {step}, seed {}",
            store.file_name().map_or(store.display().to_string(), |n| n
                .to_string_lossy()
                .into_owned()),
            cfg.run.seed
        ),
        views: sheet_views(&x, &d, &cfg, &heading)?,
        columns: sheet_columns(columns, d.frames),
        bones: layout.edges(),
    };
    let marks = Marks {
        name,
        label,
        seed: cfg.run.seed,
        step,
        dropped_frames: d.dropped_frames,
        csm_draw: d.views.drop,
        dropped_joints: d.dropped_joints,
    };
    Ok((sheet, marks))
}

/// MATM needs more than `2 * mask_frame` frames.
fn check_matm_frames(cfg: &Config, x: &Tensor, store: &Path) -> Result<()> {
    let t = x.size()[2];
    if cfg.pretrain.mask_frame > 0 && t <= 2 * cfg.pretrain.mask_frame {
        bail!(
            "pretrain.mask_frame = {}: MATM needs more than {} frames, {} has {t}",
            cfg.pretrain.mask_frame,
            2 * cfg.pretrain.mask_frame,
            store.display()
        );
    }
    Ok(())
}

/// The views of one pretraining step and what its masks removed.
struct Drawn {
    views: crate::method::PstlViews,
    /// The temporal view before MATM.
    unmasked: Tensor,
    /// Frames of the unmasked views.
    frames: usize,
    dropped_frames: Vec<usize>,
    /// CSM's draw, sorted and without repeats.
    dropped_joints: Vec<usize>,
}

/// The draws of the trainer's step `step` (`Trainer::step_rng`) on sample `x`.
fn draw_views(x: &Tensor, cfg: &Config, layout: &Layout, step: u64) -> Result<Drawn> {
    let seed = step_seed(cfg.run.seed, step);
    tch::manual_seed(seed as i64);
    let mut rng = PstlRng::seed_from_u64(seed);
    let (views, unmasked) = crate::method::pstl_views_unmasked(x, cfg, layout, &mut rng);
    let frames = unmasked.size()[2] as usize;
    let kept: Vec<i64> = match &views.kept_frames {
        Some(k) => Vec::try_from(k.flatten(0, -1))?,
        None => (0..frames as i64).collect(),
    };
    let dropped_frames = (0..frames)
        .filter(|f| !kept.contains(&(*f as i64)))
        .collect();
    let mut dropped_joints = views.drop.clone();
    dropped_joints.sort_unstable();
    dropped_joints.dedup();
    Ok(Drawn {
        views,
        unmasked,
        frames,
        dropped_frames,
        dropped_joints,
    })
}

/// The four rows of the sheet: the sample, the anchor, MATM and CSM with their marks.
fn sheet_views(x: &Tensor, d: &Drawn, cfg: &Config, heading: &str) -> Result<Vec<View>> {
    Ok(vec![
        View::plain(heading, to_frames(x)?),
        View::plain("anchor\n(augmented)", to_frames(&d.views.anchor)?),
        View {
            frame_mask: cfg.pretrain.mask_frame > 0,
            dropped_frames: d.dropped_frames.clone(),
            ..View::plain(
                "MATM view\n(augmented;\nred: frames\ndropped)",
                to_frames(&d.unmasked)?,
            )
        },
        View {
            joint_mask: true,
            dropped_joints: d.dropped_joints.clone(),
            ..View::plain(
                "CSM view\n(augmented;\nred: joints\nremoved)",
                to_frames(&d.views.spatial)?,
            )
        },
    ])
}

/// `columns` evenly spaced frame indices of `frames` (at least one).
fn sheet_columns(columns: usize, frames: usize) -> Vec<usize> {
    let k = columns.clamp(1, frames);
    (0..k)
        .map(|i| {
            if k == 1 {
                0
            } else {
                i * (frames - 1) / (k - 1)
            }
        })
        .collect()
}

/// `pstl show --store S.h5 --index I --out DIR`.
pub fn run(a: ShowArgs, g: &GlobalOpts) -> Result<()> {
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    if a.split != "train" && a.split != "test" {
        bail!("--split {}: expected `train` or `test`", a.split);
    }
    let (sheet, marks) = build_sheet(&a.store, &a.split, a.index, &cfg, a.step, a.frames)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let png = a.out.join("sheet.png");
    let gif = a.out.join("views.gif");
    let json_path = a.out.join("marks.json");
    crate::viz::skeleton::write_sheet(&png, &sheet)?;
    crate::viz::skeleton::write_gif(&gif, &sheet)?;
    crate::io::atomic_write(&json_path, serde_json::to_string_pretty(&marks)?.as_bytes())?;
    let text = format!(
        "show: {} ({}; MATM dropped frames {:?}, CSM removed joints {:?})",
        png.display(),
        gif.display(),
        marks.dropped_frames,
        marks.dropped_joints
    );
    let v = json!({"command": "show", "sheet": png, "gif": gif, "marks": json_path,
                   "dropped_frames": marks.dropped_frames, "dropped_joints": marks.dropped_joints});
    print_summary(g, &text, v);
    Ok(())
}
