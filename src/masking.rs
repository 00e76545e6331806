//! PSTL's two partial views (paper §3.3): central spatial masking (CSM, joints drawn
//! with probability proportional to their degree and removed inside the encoder) and
//! motion-attention temporal masking (MATM, the `m` fastest frames dropped, then `m`
//! more at random).

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

/// MATM: keep the `T - m` frames of lowest motion in time order, then drop `m` of
/// those uniformly at random (per sample). Output `(N, C, T - 2m, V, M)`.
pub fn matm(x: &Tensor, m: i64, rng: &mut PstlRng) -> Tensor {
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
    // Random T - 2m of the T - m kept positions, sorted, per sample.
    let keep = (t - 2 * m) as usize;
    let mut pos = Vec::with_capacity(n as usize * keep);
    let all: Vec<i64> = (0..t - m).collect();
    for _ in 0..n {
        let mut chosen: Vec<i64> = all.choose_multiple(rng, keep).copied().collect();
        chosen.sort_unstable();
        pos.extend(chosen);
    }
    let pos = Tensor::from_slice(&pos)
        .view([n, keep as i64])
        .to_device(x.device());
    let frames = slow.gather(1, &pos, false);
    let idx = frames
        .view([n, 1, keep as i64, 1, 1])
        .expand([n, size[1], keep as i64, size[3], size[4]], false);
    x.gather(2, &idx, false)
}
