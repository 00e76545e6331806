//! PSTL's two partial views (paper §3.3): central spatial masking (CSM, joints drawn
//! with probability proportional to their degree and removed inside the encoder) and
//! motion-attention temporal masking (MATM, the `m` fastest frames dropped, then `m`
//! more at random, one draw per batch as the authors do).

use crate::dist::Shard;
use crate::model::Layout;
use crate::rng::PstlRng;
use rand::seq::SliceRandom;
use tch::{Kind, Tensor};

/// Draw `k` entries without replacement from the degree-weighted joint list (a joint
/// appears `deg(j)` times), as the authors do: the result may contain duplicates.
pub fn csm_draw(layout: &Layout, k: usize, rng: &mut PstlRng) -> Vec<usize> {
    let pool: Vec<usize> = layout
        .degrees()
        .iter()
        .enumerate()
        .flat_map(|(j, &d)| std::iter::repeat_n(j, d))
        .collect();
    pool.choose_multiple(rng, k.min(pool.len()))
        .copied()
        .collect()
}

/// Per-sample frame motion score `s_t = mean over (C, V, M) of (x_{t+1} - x_t)^2`
/// (last frame 0): `(N, C, T, V, M)` -> `(N, T)`.
pub fn motion_score(x: &Tensor) -> Tensor {
    let motion = crate::stream::motion(x);
    motion
        .square()
        .mean_dim([1i64, 3, 4].as_slice(), false, Kind::Float)
}

/// MATM as the authors run it: keep the `T - m` frames of lowest motion in time
/// order, then drop `m` of those at random, with one draw for the whole batch
/// (`random.sample` once in YujieOuO/PSTL `model.py`, `motion_att_temp_mask`): every
/// sample keeps the same positions of its own slow frames. Output `(N, C, T - 2m, V, M)`.
pub fn matm(x: &Tensor, m: i64, rng: &mut PstlRng) -> Tensor {
    matm_with(x, m, false, rng)
}

/// [`matm`] with the random second drop drawn once per batch (`per_sample == false`,
/// the authors' way) or once per sample (`augment.per_sample`).
pub fn matm_with(x: &Tensor, m: i64, per_sample: bool, rng: &mut PstlRng) -> Tensor {
    matm_frames(x, m, per_sample, rng).0
}

/// [`matm_with`], also returning the frames of `x` each sample kept, `(N, T - 2m)`
/// int64 in time order (what `pstl show` marks; the others were dropped).
pub fn matm_frames(x: &Tensor, m: i64, per_sample: bool, rng: &mut PstlRng) -> (Tensor, Tensor) {
    matm_frames_rows(x, Shard::whole(x.size()[0] as usize), m, per_sample, rng)
}

/// [`matm_frames`] of rows `x` of a global batch `shard`: per-sample draws are made for
/// every row of the global batch and this shard's are used.
pub fn matm_frames_rows(
    x: &Tensor,
    shard: Shard,
    m: i64,
    per_sample: bool,
    rng: &mut PstlRng,
) -> (Tensor, Tensor) {
    let size = x.size();
    let (n, t) = (size[0], size[2]);
    assert!(
        t > 2 * m,
        "MATM needs more than 2m = {} frames, got {t}",
        2 * m
    );
    let score = motion_score(x);
    // Indices of the T - m slowest frames, put back in time order.
    let (_, slow) = score.topk(t - m, 1, false, true);
    let (slow, _) = slow.sort(1, false);
    // Random T - 2m of the T - m kept positions, sorted: one draw, or one per sample.
    let keep = (t - 2 * m) as usize;
    let all: Vec<i64> = (0..t - m).collect();
    let mut draw = || {
        let mut chosen: Vec<i64> = all.choose_multiple(rng, keep).copied().collect();
        chosen.sort_unstable();
        chosen
    };
    let pos: Vec<i64> = if per_sample {
        let all: Vec<Vec<i64>> = (0..shard.global).map(|_| draw()).collect();
        shard.pick(&all, n as usize).concat()
    } else {
        draw().repeat(n as usize)
    };
    let pos = Tensor::from_slice(&pos)
        .view([n, keep as i64])
        .to_device(x.device());
    let frames = slow.gather(1, &pos, false);
    let idx = frames
        .view([n, 1, keep as i64, 1, 1])
        .expand([n, size[1], keep as i64, size[3], size[4]], false);
    (x.gather(2, &idx, false), frames)
}
