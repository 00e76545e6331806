//! The PSTL method on one page (paper §3, Algorithm 1). Per step, three views of a
//! batch: the **anchor** (augmentations only), the **temporal** view (augmented, then
//! motion-attention temporal masking, MATM, [`crate::masking`]) and the **spatial** view
//! (augmented; central spatial masking, CSM, removes joints inside the encoder). One
//! shared encoder ([`crate::model::StGcn`]) and projector ([`crate::model::head`]) embed
//! all three, and the loss is `BT(anchor, MATM) + BT(anchor, CSM)` with the Barlow Twins
//! loss [`bt_loss`]. The anchor is encoded and projected once and serves both losses.
//!
//! [`pstl_losses`] is the single-process step; [`pstl_losses_dp`] is the same step on one
//! rank of a data-parallel run, equal to it on the global batch: each rank draws the
//! views of its own rows (the same random numbers on every rank), runs the encoder and
//! the projector on them with global-batch statistics in the projector's norms, and
//! all-gathers the normalised projections so that both losses see the global batch.
//! The training loop around them is [`crate::train`].

use crate::augment::augment_rows;
use crate::config::Config;
pub use crate::dist::Shard;
use crate::dist::{DistError, ProcessGroup};
use crate::masking::{csm_draw, matm_frames_rows};
use crate::model::{bt_loss, BtLoss, Layout, NormStats, Pstl};
use crate::rng::PstlRng;
use tch::Tensor;

/// The losses of one step, as device tensors.
#[derive(Debug)]
pub struct StepLosses {
    /// `BT(anchor, MATM) + BT(anchor, CSM)`.
    pub total: Tensor,
    /// `BT(anchor, MATM)`.
    pub matm: BtLoss,
    /// `BT(anchor, CSM)`.
    pub csm: BtLoss,
}

/// The three inputs of a PSTL step.
#[derive(Debug)]
pub struct PstlViews {
    /// Anchor: augmentations only.
    pub anchor: Tensor,
    /// Augmented, then MATM (`T - 2m` frames).
    pub temporal: Tensor,
    /// Augmented; its joints `drop` are removed inside the encoder (CSM).
    pub spatial: Tensor,
    /// The CSM draw (may repeat a joint, as the authors' does).
    pub drop: Vec<usize>,
    /// The frames of the augmented temporal view that MATM kept, `(N, T - 2m)` in time
    /// order (`None` without MATM, `pretrain.mask_frame = 0`).
    pub kept_frames: Option<Tensor>,
}

/// The three views of joint batch `x`, in the authors' order (YujieOuO/PSTL
/// `procedure.py`, `BTProcessor.train_epoch`): the stream is computed first
/// (`data = get_stream(data)`), then each view draws its own crop, shear, rotation and
/// flip; the MATM view is masked after augmenting; the CSM draw comes last.
pub fn pstl_views(x: &Tensor, cfg: &Config, layout: &Layout, rng: &mut PstlRng) -> PstlViews {
    pstl_views_unmasked(x, cfg, layout, rng).0
}

/// [`pstl_views`], also returning the augmented temporal view before MATM (what
/// `pstl show` draws with the dropped frames marked). Same draws, same order.
pub fn pstl_views_unmasked(
    x: &Tensor,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
) -> (PstlViews, Tensor) {
    pstl_views_shard(x, Shard::whole(x.size()[0] as usize), cfg, layout, rng)
}

/// [`pstl_views_unmasked`] of rows `x` of the global batch `shard`: the same draws in
/// the same order, whatever the shard, and this shard's rows of every view.
pub fn pstl_views_shard(
    x: &Tensor,
    shard: Shard,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
) -> (PstlViews, Tensor) {
    let data = cfg.data.stream.apply(x, layout);
    let view = |rng: &mut PstlRng| augment_rows(&data, shard, &cfg.augment, layout, rng);
    let anchor = view(rng);
    let unmasked = view(rng);
    let (temporal, kept_frames) = if cfg.pretrain.mask_frame > 0 {
        let (t, kept) = matm_frames_rows(
            &unmasked,
            shard,
            cfg.pretrain.mask_frame,
            cfg.augment.per_sample,
            rng,
        );
        (t, Some(kept))
    } else {
        (unmasked.shallow_clone(), None)
    };
    let spatial = view(rng);
    let drop = csm_draw(layout, cfg.pretrain.mask_joint, rng);
    let views = PstlViews {
        anchor,
        temporal,
        spatial,
        drop,
        kept_frames,
    };
    (views, unmasked)
}

/// The two Barlow Twins losses of the projected views `z_anchor`, `z_temporal`,
/// `z_spatial`.
fn two_losses(
    z_anchor: &Tensor,
    z_temporal: &Tensor,
    z_spatial: &Tensor,
    lambda: f64,
) -> StepLosses {
    let matm = bt_loss(z_anchor, z_temporal, lambda);
    let csm = bt_loss(z_anchor, z_spatial, lambda);
    StepLosses {
        total: &matm.total + &csm.total,
        matm,
        csm,
    }
}

/// Build the three views of joint batch `x` and return the PSTL losses (one process).
pub fn pstl_losses(
    model: &Pstl,
    x: &Tensor,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
    train: bool,
) -> StepLosses {
    let views = pstl_views(x, cfg, layout, rng);
    views_losses(model, &views, cfg, train)
}

/// The PSTL losses of prepared views (one process; libtorch's norms in the projector,
/// or the synchronised formula over this batch with `pretrain.sync_bn` in training).
pub fn views_losses(model: &Pstl, v: &PstlViews, cfg: &Config, train: bool) -> StepLosses {
    let embed = |x: &Tensor, drop: &[usize]| {
        let f = model.encoder.forward_drop(x, drop, train);
        if train && cfg.pretrain.sync_bn {
            // Without a group no collective runs, so there is no error to handle.
            let synced = model.head.embed_train(&f, NormStats::Global(None));
            synced.unwrap_or_else(|_| model.head.embed(&f, true))
        } else {
            model.head.embed(&f, train)
        }
    };
    let z1 = embed(&v.anchor, &[]);
    let z2 = embed(&v.temporal, &[]);
    let z3 = embed(&v.spatial, &v.drop);
    two_losses(&z1, &z2, &z3, cfg.pretrain.lambda)
}

/// Data-parallel PSTL losses on this rank's rows `x` of the global batch `shard`: the
/// views of these rows (drawn with the global batch's random numbers), the encoder and
/// the projector on them (its norms with global-batch statistics), then the normalised
/// projections all-gathered with gradient, so that both losses run on the global batch.
pub fn pstl_losses_dp(
    model: &Pstl,
    x: &Tensor,
    shard: Shard,
    pg: &ProcessGroup,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
) -> Result<StepLosses, DistError> {
    let v = pstl_views_shard(x, shard, cfg, layout, rng).0;
    let embed = |t: &Tensor, drop: &[usize]| {
        let f = model.encoder.forward_drop(t, drop, true);
        let z = model.head.embed_train(&f, NormStats::Global(Some(pg)))?;
        pg.all_gather_rows_autograd(&z)
    };
    let z1 = embed(&v.anchor, &[])?;
    let z2 = embed(&v.temporal, &[])?;
    let z3 = embed(&v.spatial, &v.drop)?;
    Ok(two_losses(&z1, &z2, &z3, cfg.pretrain.lambda))
}
