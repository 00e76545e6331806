//! The PSTL model (paper §3): skeleton graph, ST-GCN encoder, Barlow Twins head and
//! loss, and the pretraining model that ties them together.

pub mod backend;
pub mod dropout;
pub mod graph;
pub mod head;
pub mod init;
pub mod precision;
pub mod stgcn;

pub use graph::{part_set, Graph, Layout};
pub use head::{bt_loss, bt_loss_direct, BtHead, BtLoss, NormStats};
pub use precision::{LossScaler, Precision};
pub use stgcn::{EncoderConfig, StGcn};

use tch::nn;

/// Encoder + Barlow Twins head, under the VarStore prefixes `encoder` and `projector`
/// (the prefixes of `../shared/golden/pstl_official_seed1.safetensors`).
#[derive(Debug)]
pub struct Pstl {
    /// The ST-GCN encoder (`encoder.*`).
    pub encoder: StGcn,
    /// The projector and its normaliser (`projector.projector.*`, `projector.bn.*`).
    pub head: BtHead,
}

impl Pstl {
    /// Build both parts under `root`.
    pub fn new(root: &nn::Path, layout: &Layout, cfg: &EncoderConfig, projector_dim: i64) -> Self {
        let encoder = StGcn::new(root / "encoder", layout, cfg);
        let head = BtHead::new(root / "projector", cfg.feature_dim, projector_dim);
        Pstl { encoder, head }
    }

    /// Run encoder blocks and projector in `precision` (fp32 master weights).
    pub fn set_precision(&mut self, precision: Precision) {
        self.encoder.set_compute(precision.kind());
        self.head.compute = precision.kind();
    }
}
