//! AimCLR's frame-50 normalisation (method file section 6), which PSTL's NTU and
//! PKU-MMD data went through:
//!
//! 1. valid length `L` = the number of frames whose person-0 joint-0 xyz is not all zero;
//! 2. subtract joint 20 (spine shoulder) per frame and person;
//! 3. resize frames `[0, L)` to `out_frames` with OpenCV `INTER_LINEAR` semantics
//!    (`src = (dst + 0.5) * L / out - 0.5`, clamped to `[0, L - 1]`);
//! 4. per person and output frame, rotate about the y axis so that the shoulder vector
//!    (joint 8 - joint 4, y set to 0) lies on +x: `theta_t = degrees(arccos(v_x /
//!    (|v| + 1e-4)))`, all `theta` negated when the sum over frames of `v_z` is >= 0,
//!    and joints mapped by `[[cos, 0, -sin], [0, 1, 0], [sin, 0, cos]]`.
//!
//! Notes on the reading of the method file:
//! - `L` is a count, not the last valid index; frames `[0, L)` are resized even if a
//!   zero frame sits among them (as the count-then-slice in AimCLR does).
//! - Step 2 needs no special case for absent persons: an all-zero person has joint 20 at
//!   zero, so subtracting it leaves zeros.
//! - Step 4's angle is in degrees and the rotation is by that many degrees (converted to
//!   radians for `cos`/`sin`); with that reading the shoulder vector maps onto +x. An
//!   absent person gets `theta = -90` degrees, which leaves its zeros zero.
//! - Input frames beyond the NTU maximum of 300 are kept (no truncation).
//! - Arithmetic is in `f64`, the output `f32`. `L == 0` gives all zeros.

use super::{RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

/// Spine shoulder: the centre joint subtracted in step 2.
pub const CENTER_JOINT: usize = 20;
/// Left and right shoulder: the vector `joint 8 - joint 4` is aligned with +x.
pub const LEFT_SHOULDER: usize = 4;
pub const RIGHT_SHOULDER: usize = 8;

/// Normalises one raw sequence to `(3, out_frames, 25, 2)` (see the module docs).
pub fn frame50(raw: &RawSeq, out_frames: usize) -> Vec<f32> {
    const V: usize = NTU_JOINTS;
    const M: usize = PERSONS;
    let t_in = raw.frames;
    let at_in = |c: usize, t: usize, v: usize, m: usize| raw.data[((c * t_in + t) * V + v) * M + m];

    let mut out = vec![0.0f32; CHANNELS * out_frames * V * M];
    // 1. Valid length: a count of frames whose person-0 joint-0 is not (0, 0, 0).
    let valid = (0..t_in)
        .filter(|&t| (0..CHANNELS).any(|c| at_in(c, t, 0, 0) != 0.0))
        .count();
    if valid == 0 || out_frames == 0 {
        return out;
    }

    // 2 + 3. Centre on joint 20 and resize along time. Both are linear and per frame,
    // so each output value is the interpolation of the two centred source values.
    let scale = valid as f64 / out_frames as f64;
    let mut rows = vec![[0.0f64; CHANNELS]; out_frames * V * M];
    let idx = |t: usize, v: usize, m: usize| (t * V + v) * M + m;
    for (o, (i0, i1, w)) in (0..out_frames).map(|o| (o, linear_taps(o, scale, valid))) {
        for m in 0..M {
            let centred = |c: usize, t: usize, v: usize| {
                f64::from(at_in(c, t, v, m)) - f64::from(at_in(c, t, CENTER_JOINT, m))
            };
            for v in 0..V {
                for (c, value) in rows[idx(o, v, m)].iter_mut().enumerate() {
                    *value = centred(c, i0, v) * (1.0 - w) + centred(c, i1, v) * w;
                }
            }
        }
    }

    // 4. Per person: angle per frame, sign from the summed z of the shoulder vector.
    let mut theta = vec![0.0f64; out_frames];
    for m in 0..M {
        let mut sum_z = 0.0f64;
        for (t, th) in theta.iter_mut().enumerate() {
            let l = rows[idx(t, LEFT_SHOULDER, m)];
            let r = rows[idx(t, RIGHT_SHOULDER, m)];
            let (vx, vz) = (r[0] - l[0], r[2] - l[2]);
            let norm = (vx * vx + vz * vz).sqrt();
            *th = (vx / (norm + 1e-4)).clamp(-1.0, 1.0).acos().to_degrees();
            sum_z += vz;
        }
        let sign = if sum_z >= 0.0 { -1.0 } else { 1.0 };
        for (t, th) in theta.iter().enumerate() {
            let (sin, cos) = (sign * th).to_radians().sin_cos();
            for v in 0..V {
                let [x, y, z] = rows[idx(t, v, m)];
                let rotated = [cos * x - sin * z, y, sin * x + cos * z];
                for (c, value) in rotated.into_iter().enumerate() {
                    out[((c * out_frames + t) * V + v) * M + m] = value as f32;
                }
            }
        }
    }
    out
}

/// OpenCV `INTER_LINEAR` taps for output index `dst`: source indices `i0`, `i1` and the
/// weight of `i1`, for a source of `len >= 1` samples and `scale = len / out`.
pub fn linear_taps(dst: usize, scale: f64, len: usize) -> (usize, usize, f64) {
    let src = (dst as f64 + 0.5) * scale - 0.5;
    if src <= 0.0 {
        return (0, 0, 0.0);
    }
    let i0 = src.floor() as usize;
    if i0 >= len - 1 {
        return (len - 1, len - 1, 0.0);
    }
    (i0, i0 + 1, src - i0 as f64)
}
