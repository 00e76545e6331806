//! Synchronised batch norm for the encoder (`pretrain.sync_bn`): batch statistics over
//! the global batch, with gradients through them (c10d all-gather with autograd). The
//! projector of a data-parallel run always uses it ([`global_batch_norm`]).
//!
//! The encoder calls [`batch_norm`] for each of its norms; while a [`SyncGuard`] is
//! alive on the thread, training-mode norms use the group's statistics, otherwise the
//! per-process ones (as DDP without SyncBatchNorm). A failed collective falls back to
//! the local statistics and is reported by [`SyncGuard::finish`].
//!
//! A single process with `pretrain.sync_bn` runs the same formula over its own batch
//! (a guard without a group), so a run's arithmetic does not depend on its world size:
//! one process on 128 samples equals two ranks on 64 each to rounding. The formula
//! itself equals libtorch's batch norm (outputs, gradients, running statistics) to about
//! 1e-6 relative on one layer (`tests/it/dist.rs`).

use super::{DistError, ProcessGroup};
use std::cell::RefCell;
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// `eps` and `momentum` of every encoder norm (`model::init::bn_config`).
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

thread_local! {
    /// `Some(None)`: synchronised formula over the local batch (one process).
    static GROUP: RefCell<Option<Option<Arc<ProcessGroup>>>> = const { RefCell::new(None) };
    static ERROR: RefCell<Option<DistError>> = const { RefCell::new(None) };
}

/// Synchronises the encoder's norms on this thread until [`SyncGuard::finish`] or drop.
pub struct SyncGuard(());

impl SyncGuard {
    /// Start synchronising over `pg` (`None`: one process, its own batch).
    pub fn new(pg: Option<Arc<ProcessGroup>>) -> Self {
        GROUP.with(|g| *g.borrow_mut() = Some(pg));
        ERROR.with(|e| e.borrow_mut().take());
        SyncGuard(())
    }

    /// Stop, returning the first collective error of the guarded forward passes.
    pub fn finish(self) -> Result<(), DistError> {
        GROUP.with(|g| g.borrow_mut().take());
        ERROR.with(|e| e.borrow_mut().take()).map_or(Ok(()), Err)
    }
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        GROUP.with(|g| g.borrow_mut().take());
    }
}

/// `bn` applied to `x` `(N, C, ...)`: global statistics under a [`SyncGuard`] in training
/// mode, else `bn`'s own `apply_t`.
pub fn batch_norm(x: &Tensor, bn: &nn::BatchNorm, train: bool) -> Tensor {
    let group = if train {
        GROUP.with(|g| g.borrow().clone())
    } else {
        None
    };
    let Some(pg) = group else {
        return x.apply_t(bn, train);
    };
    match global_batch_norm(x, bn, pg.as_deref()) {
        Ok(y) => y,
        Err(err) => {
            ERROR.with(|e| {
                e.borrow_mut().get_or_insert(err);
            });
            x.apply_t(bn, train)
        }
    }
}

/// Training-mode `bn` of `x` `(N, C, ...)` with the statistics of the global batch (every
/// rank's rows; `None`: this process's), gradients through them, running statistics
/// updated as libtorch does.
pub fn global_batch_norm(
    x: &Tensor,
    bn: &nn::BatchNorm,
    pg: Option<&ProcessGroup>,
) -> Result<Tensor, DistError> {
    let c = x.size()[1];
    let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
    let mut shape = vec![1i64; x.dim()];
    shape[1] = c;
    // libtorch's own batch norm accumulates in double on the CPU and in float on CUDA;
    // so does this one, or gradients of near-constant channels drift apart.
    let acc = if x.device() == tch::Device::Cpu {
        Kind::Double
    } else {
        Kind::Float
    };
    let xa = x.to_kind(acc);
    let n_local = (x.numel() as i64 / c.max(1)) as f64;
    let sum = xa.sum_dim_intlist(dims.as_slice(), false, acc);
    let mu = &sum / n_local;
    let m2 =
        (&xa - mu.view(shape.as_slice()))
            .square()
            .sum_dim_intlist(dims.as_slice(), false, acc);
    let count = Tensor::full([c], n_local, (acc, x.device()));
    let local = Tensor::stack(&[count, sum, m2], 0).unsqueeze(0);
    let all = match pg {
        Some(pg) => pg.all_gather_rows_autograd(&local)?,
        None => local,
    };
    let (counts, sums, m2s) = (all.select(1, 0), all.select(1, 1), all.select(1, 2));
    let n = counts.sum_dim_intlist(0, false, acc);
    let mean = sums.sum_dim_intlist(0, false, acc) / &n;
    let dev = (&sums / &counts) - mean.unsqueeze(0);
    let m2 = (m2s + &counts * dev.square()).sum_dim_intlist(0, false, acc);
    let var = &m2 / &n;
    // Normalise in the input's precision with rounded statistics, as libtorch does.
    let (kind, view) = (x.kind(), shape.as_slice());
    let invstd = (&var + EPS).rsqrt();
    let mut y = (x - mean.to_kind(kind).view(view)) * invstd.to_kind(kind).view(view);
    if let Some(w) = &bn.ws {
        y *= w.view(shape.as_slice());
    }
    if let Some(b) = &bn.bs {
        y += b.view(shape.as_slice());
    }
    tch::no_grad(|| {
        let unbiased = &m2 / (&n - 1.0).clamp_min(1.0);
        let kind = bn.running_mean.kind();
        let rm = &bn.running_mean * (1.0 - MOMENTUM) + mean.detach().to_kind(kind) * MOMENTUM;
        let rv = &bn.running_var * (1.0 - MOMENTUM) + unbiased.detach().to_kind(kind) * MOMENTUM;
        bn.running_mean.shallow_clone().copy_(&rm);
        bn.running_var.shallow_clone().copy_(&rv);
    });
    Ok(y)
}
