//! In-batch, on-device skeleton augmentations of PSTL's pretraining views (paper §3.2;
//! AimCLR's feeder): shear, temporal crop with mirror padding, 3-axis rotation and
//! left/right flip. Random numbers are drawn on the host from a seeded `PstlRng` (so runs
//! are reproducible on any device) and applied as small tensors on the data's device.
//! Draws are per batch as in the authors' code, or per sample with `per_sample`. They
//! act on the stream (motion, bone) already computed, as the authors' do.
//!
//! On one rank of a data-parallel run ([`augment_rows`]) the per-sample draws are made
//! for the whole global batch and only this rank's are applied, so every rank draws
//! the same numbers and a run does not depend on its world size.

use crate::dist::Shard;
use crate::model::Layout;
use crate::rng::PstlRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `[augment]` of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Shear amplitude: off-diagonals `U(-a, a)`; 0 disables shear.
    pub shear_amp: f64,
    /// Temporal crop: pad `T / pad_ratio` mirrored frames at each end; 0 disables.
    pub pad_ratio: i64,
    /// Rotation of the randomly chosen main axis, `U(0, deg)` degrees; 0 disables.
    pub rotate_main_deg: f64,
    /// Rotation of the two other axes, `U(0, deg)` degrees.
    pub rotate_other_deg: f64,
    /// Probability of the left/right flip.
    pub flip_prob: f64,
    /// Draw every augmentation, and MATM's random frame drop, per sample instead of
    /// once per batch (the authors' way).
    pub per_sample: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            shear_amp: 1.0,
            pad_ratio: 6,
            rotate_main_deg: 30.0,
            rotate_other_deg: 1.0,
            flip_prob: 0.5,
            per_sample: false,
        }
    }
}

/// Apply all configured augmentations to a batch `(N, C, T, V, M)`.
pub fn augment(x: &Tensor, cfg: &AugmentConfig, layout: &Layout, rng: &mut PstlRng) -> Tensor {
    augment_rows(x, Shard::whole(x.size()[0] as usize), cfg, layout, rng)
}

/// [`augment`] of rows `x` of a global batch `shard`: the same draws as for the whole
/// batch, this shard's applied.
pub fn augment_rows(
    x: &Tensor,
    shard: Shard,
    cfg: &AugmentConfig,
    layout: &Layout,
    rng: &mut PstlRng,
) -> Tensor {
    let n = x.size()[0] as usize;
    let draws = if cfg.per_sample { shard.global } else { 1 };
    let mut y = x.shallow_clone();
    if cfg.shear_amp > 0.0 {
        let s: Vec<[f64; 9]> = (0..draws)
            .map(|_| shear_matrix(cfg.shear_amp, rng))
            .collect();
        // x'[d] = sum_c x[c] S[c][d]
        y = apply_matrices(&y, shard.pick(&s, n), true);
    }
    if cfg.pad_ratio > 0 {
        y = temporal_crop_rows(&y, cfg.pad_ratio, draws, shard, rng);
    }
    if cfg.rotate_main_deg > 0.0 || cfg.rotate_other_deg > 0.0 {
        let r: Vec<[f64; 9]> = (0..draws)
            .map(|_| rotation_matrix(cfg.rotate_main_deg, cfg.rotate_other_deg, rng))
            .collect();
        y = apply_matrices(&y, shard.pick(&r, n), false);
    }
    if cfg.flip_prob > 0.0 {
        let flips: Vec<bool> = (0..draws)
            .map(|_| rng.gen::<f64>() < cfg.flip_prob)
            .collect();
        y = flip(&y, layout, shard.pick(&flips, n));
    }
    y
}

/// A 3x3 shear matrix, row-major, 1 on the diagonal.
pub fn shear_matrix(amp: f64, rng: &mut PstlRng) -> [f64; 9] {
    let mut s = [0.0; 9];
    for (i, v) in s.iter_mut().enumerate() {
        *v = if i % 4 == 0 {
            1.0
        } else {
            rng.gen_range(-amp..=amp)
        };
    }
    s
}

/// `R = Rz · Ry · Rx` (x first, then y, then z) with one random main axis rotated by
/// `U(0, main_deg)` and the others by `U(0, other_deg)`; row-major.
pub fn rotation_matrix(main_deg: f64, other_deg: f64, rng: &mut PstlRng) -> [f64; 9] {
    let main = rng.gen_range(0..3usize);
    let mut ang = [0.0f64; 3];
    for (axis, a) in ang.iter_mut().enumerate() {
        let deg = if axis == main { main_deg } else { other_deg };
        *a = rng.gen_range(0.0..=deg.max(f64::MIN_POSITIVE)).to_radians();
    }
    let (cx, sx) = (ang[0].cos(), ang[0].sin());
    let (cy, sy) = (ang[1].cos(), ang[1].sin());
    let (cz, sz) = (ang[2].cos(), ang[2].sin());
    let rx = [1.0, 0.0, 0.0, 0.0, cx, sx, 0.0, -sx, cx];
    let ry = [cy, 0.0, -sy, 0.0, 1.0, 0.0, sy, 0.0, cy];
    let rz = [cz, sz, 0.0, -sz, cz, 0.0, 0.0, 0.0, 1.0];
    matmul3(&rz, &matmul3(&ry, &rx))
}

fn matmul3(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
    let mut c = [0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            c[i * 3 + j] = (0..3).map(|k| a[i * 3 + k] * b[k * 3 + j]).sum();
        }
    }
    c
}

/// Apply one matrix (or one per sample) on the channel axis. `transposed == false`:
/// `x' = R x`; `true`: `x'[d] = sum_c x[c] S[c][d]`.
pub fn apply_matrices(x: &Tensor, mats: &[[f64; 9]], transposed: bool) -> Tensor {
    let flat: Vec<f32> = mats
        .iter()
        .flat_map(|m| m.iter().map(|&v| v as f32))
        .collect();
    let m = Tensor::from_slice(&flat)
        .view([mats.len() as i64, 3, 3])
        .to_device(x.device());
    let eq = match (mats.len() == 1, transposed) {
        (true, false) => "dc,nctvm->ndtvm",
        (true, true) => "cd,nctvm->ndtvm",
        (false, false) => "ndc,nctvm->ndtvm",
        (false, true) => "ncd,nctvm->ndtvm",
    };
    let m = if mats.len() == 1 { m.squeeze_dim(0) } else { m };
    Tensor::einsum(eq, &[m, x.to_kind(Kind::Float)], None::<i64>)
}

/// Mirror-pad `T / pad_ratio` frames at both ends and crop `T` frames from a random
/// start in `[0, 2 * pad]` (one start, or one per sample when `draws == N`).
pub fn temporal_crop(x: &Tensor, pad_ratio: i64, draws: usize, rng: &mut PstlRng) -> Tensor {
    let shard = Shard::whole(x.size()[0] as usize);
    temporal_crop_rows(x, pad_ratio, draws, shard, rng)
}

/// [`temporal_crop`] of rows `x` of a global batch `shard` (`draws`: 1 or its rows).
fn temporal_crop_rows(
    x: &Tensor,
    pad_ratio: i64,
    draws: usize,
    shard: Shard,
    rng: &mut PstlRng,
) -> Tensor {
    let size = x.size();
    let t = size[2];
    let pad = t / pad_ratio;
    if pad == 0 {
        return x.shallow_clone();
    }
    let head = x.narrow(2, 0, pad).flip([2]);
    let tail = x.narrow(2, t - pad, pad).flip([2]);
    let padded = Tensor::cat(&[head, x.shallow_clone(), tail], 2);
    if draws == 1 {
        let start = rng.gen_range(0..=2 * pad);
        return padded.narrow(2, start, t);
    }
    let starts: Vec<i64> = (0..draws).map(|_| rng.gen_range(0..=2 * pad)).collect();
    let starts = shard.pick(&starts, size[0] as usize);
    let idx = Tensor::from_slice(starts).view([-1, 1])
        + Tensor::arange(t, (Kind::Int64, tch::Device::Cpu));
    let idx = idx
        .to_device(x.device())
        .view([size[0], 1, t, 1, 1])
        .expand([size[0], size[1], t, size[3], size[4]], false);
    padded.gather(2, &idx, false)
}

/// Left/right flip: permute joints by the layout's mirror order where `flips` is true.
pub fn flip(x: &Tensor, layout: &Layout, flips: &[bool]) -> Tensor {
    let order: Vec<i64> = layout.flip_order.iter().map(|&j| j as i64).collect();
    let order = Tensor::from_slice(&order).to_device(x.device());
    if flips.len() == 1 {
        return if flips[0] {
            x.index_select(3, &order)
        } else {
            x.shallow_clone()
        };
    }
    if !flips.iter().any(|&f| f) {
        return x.shallow_clone();
    }
    let mask: Vec<bool> = flips.to_vec();
    let mask = Tensor::from_slice(&mask)
        .to_device(x.device())
        .view([-1, 1, 1, 1, 1]);
    x.index_select(3, &order).where_self(&mask, x)
}
