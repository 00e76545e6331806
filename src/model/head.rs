//! The Barlow Twins head and loss (paper §3.4): one projector shared by both losses
//! (`projector.{0,1,3,4,6}`), a non-affine `bn`, and the redundancy-reduction loss.
//!
//! The off-diagonal term uses the Gram identity
//! `sum_ij c_ij^2 = sum((A Aᵀ) ∘ (B Bᵀ)) / N²`, so the `D x D` cross-correlation is
//! never formed (O(N² D) time, O(N²) memory); [`bt_loss_direct`] keeps the textbook
//! form for tests.

use super::init;
use super::precision;
use crate::dist::sync_bn::global_batch_norm;
use crate::dist::{DistError, ProcessGroup};
use tch::{nn, Kind, Tensor};

/// Where the projector's training-mode batch norms take their statistics.
#[derive(Debug, Clone, Copy)]
pub enum NormStats<'a> {
    /// libtorch's batch norm over this process's rows.
    Local,
    /// The synchronised formula over the global batch (`None`: one process, its rows),
    /// as a data-parallel run computes it.
    Global(Option<&'a ProcessGroup>),
}

/// Projector + normaliser of the Barlow Twins head.
#[derive(Debug)]
pub struct BtHead {
    l0: nn::Linear,
    bn1: nn::BatchNorm,
    l3: nn::Linear,
    bn4: nn::BatchNorm,
    l6: nn::Linear,
    bn: nn::BatchNorm,
    /// Kind of the projector's matrix products (the final `bn` and the loss are fp32).
    pub compute: Kind,
}

/// The two parts of one Barlow Twins loss, as 0-d tensors (kept on the device).
#[derive(Debug)]
pub struct BtLoss {
    /// `sum_i (c_ii - 1)^2 + lambda * sum_{i != j} c_ij^2`.
    pub total: Tensor,
    /// `sum_i (c_ii - 1)^2`.
    pub on_diag: Tensor,
    /// `sum_{i != j} c_ij^2` (before the lambda weight).
    pub off_diag: Tensor,
}

impl BtHead {
    /// Build under `p` (the official full model uses `projector` for the MLP and `bn`
    /// beside it; pstl keeps both under one prefix, see `checkpoint`).
    pub fn new(p: nn::Path, in_dim: i64, dim: i64) -> Self {
        let mlp = &p / "projector";
        BtHead {
            l0: init::linear(&(&mlp / "0"), in_dim, dim, false),
            bn1: init::batch_norm1d(&(&mlp / "1"), dim),
            l3: init::linear(&(&mlp / "3"), dim, dim, false),
            bn4: init::batch_norm1d(&(&mlp / "4"), dim),
            l6: init::linear(&(&mlp / "6"), dim, dim, false),
            bn: init::batch_norm1d_plain(&(&p / "bn"), dim),
            compute: Kind::Float,
        }
    }

    /// `bn(projector(f))`: the normalised embedding that enters the loss.
    pub fn embed(&self, f: &Tensor, train: bool) -> Tensor {
        let k = self.compute;
        let h = precision::linear(f, &self.l0, k)
            .apply_t(&self.bn1, train)
            .relu();
        let h = precision::linear(&h, &self.l3, k)
            .apply_t(&self.bn4, train)
            .relu();
        precision::linear(&h, &self.l6, k)
            .to_kind(Kind::Float)
            .apply_t(&self.bn, train)
    }

    /// [`BtHead::embed`] in training mode with the norms' statistics from `stats`: on
    /// one rank of a data-parallel run, this rank's rows normalised as the global batch.
    pub fn embed_train(&self, f: &Tensor, stats: NormStats) -> Result<Tensor, DistError> {
        let pg = match stats {
            NormStats::Local => return Ok(self.embed(f, true)),
            NormStats::Global(pg) => pg,
        };
        let k = self.compute;
        let h = precision::linear(f, &self.l0, k);
        let h = global_batch_norm(&h, &self.bn1, pg)?.relu();
        let h = precision::linear(&h, &self.l3, k);
        let h = global_batch_norm(&h, &self.bn4, pg)?.relu();
        let z = precision::linear(&h, &self.l6, k).to_kind(Kind::Float);
        global_batch_norm(&z, &self.bn, pg)
    }
}

/// Barlow Twins loss of two normalised embeddings `a`, `b` (`N x D`), Gram form.
pub fn bt_loss(a: &Tensor, b: &Tensor, lambda: f64) -> BtLoss {
    let n = a.size()[0] as f64;
    let diag = (a * b).sum_dim_intlist(0, false, Kind::Float) / n;
    let on_diag = (&diag - 1.0).square().sum(Kind::Float);
    let ga = a.matmul(&a.tr());
    let gb = b.matmul(&b.tr());
    let all = (ga * gb).sum(Kind::Float) / (n * n);
    let off_diag = all - diag.square().sum(Kind::Float);
    BtLoss {
        total: &on_diag + &off_diag * lambda,
        on_diag,
        off_diag,
    }
}

/// Barlow Twins loss, direct form: forms `c = aᵀ b / N` (`D x D`). For tests.
pub fn bt_loss_direct(a: &Tensor, b: &Tensor, lambda: f64) -> BtLoss {
    let n = a.size()[0] as f64;
    let c = a.tr().matmul(b) / n;
    let diag = c.diagonal(0, 0, 1);
    let on_diag = (&diag - 1.0).square().sum(Kind::Float);
    let off_diag = c.square().sum(Kind::Float) - diag.square().sum(Kind::Float);
    BtLoss {
        total: &on_diag + &off_diag * lambda,
        on_diag,
        off_diag,
    }
}
