//! Dropout of the encoder blocks (ST-GCN's `nn.Dropout(0.5)` after the temporal
//! convolution) with a CPU mask drawn in parallel.
//!
//! libtorch draws CPU Bernoulli masks one element at a time from its single generator
//! (a serial loop over about 190 million elements per pretraining step at the official
//! size, a sixth of the bf16 step on 2 cores). Here each 64 Ki-element chunk of the
//! mask comes from its own ChaCha8 stream of one seed, drawn from libtorch's generator
//! (so `tch::manual_seed` still fixes the masks), filled on all cores. The mask holds
//! `0` or `1 / (1 - p)` in the activation's precision and multiplies the input, as
//! libtorch's dropout does; the masks do not depend on the thread count. On CUDA (whose
//! dropout is one fused kernel) and for other kinds, libtorch's dropout runs.

use crate::rng::PstlRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Elements per ChaCha8 stream.
const CHUNK: usize = 1 << 16;

/// Dropout with probability `p` in training mode, the identity otherwise.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu || !matches!(x.kind(), Kind::Float | Kind::BFloat16) || p >= 1.0 {
        return x.dropout(p, train);
    }
    // One serial draw per call keeps the masks a function of libtorch's seed.
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[]);
    x * keep_mask(&x.size(), x.kind(), 1.0 - p, seed as u64)
}

/// A CPU tensor of `shape` and `kind` whose elements are
/// `1 / keep` with probability `keep` and `0` otherwise, from the streams of `seed`.
pub fn keep_mask(shape: &[i64], kind: Kind, keep: f64, seed: u64) -> Tensor {
    if !matches!(kind, Kind::Float | Kind::BFloat16) {
        // Other kinds (unused by the encoder): drawn in fp32, then converted.
        return keep_mask(shape, Kind::Float, keep, seed).to_kind(kind);
    }
    let mask = Tensor::empty(shape, (kind, Device::Cpu));
    let n = mask.numel();
    // An element is kept when its 32-bit draw is below `keep * 2^32` (exact for 0.5).
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = 1.0 / keep;
    let ptr = mask.data_ptr();
    if kind == Kind::Float {
        // SAFETY: `mask` is a fresh contiguous CPU tensor of `n` f32 that nothing else
        // references until this function returns it.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut f32, n) };
        fill(out, threshold, seed, scale as f32, 0.0);
    } else {
        // SAFETY: as above, `n` bf16 values stored as their 16-bit patterns.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u16, n) };
        let one = half::bf16::from_f64(scale).to_bits();
        fill(out, threshold, seed, one, 0);
    }
    mask
}

fn fill<T: Copy + Send + Sync>(out: &mut [T], threshold: u64, seed: u64, one: T, zero: T) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut rng = PstlRng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            for v in chunk.iter_mut() {
                *v = if u64::from(rng.next_u32()) < threshold {
                    one
                } else {
                    zero
                };
            }
        });
}
