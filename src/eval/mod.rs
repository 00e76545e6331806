//! Downstream evaluation (paper §4): linear probe, KNN, fine-tune, semi-supervised,
//! transfer, the practical missing-joint evaluation (`robust`), the 3-stream
//! ensemble and a t-SNE map of the features (`tsne`). Every protocol writes `results.json`, a per-epoch CSV where it trains,
//! `scores.npy` (test logits), a confusion matrix and an accuracy curve, and prints
//! a one-line summary. Test sets are always evaluated in eval mode, without
//! augmentation and with a fixed seed for any random joint removal.
//!
//! This file holds what every protocol shares (the store's splits as tensors, the
//! encoder, its features); [`classifier`] the classifier and its training, [`output`]
//! what a protocol writes; one file per protocol beside them. A new protocol is a new
//! file with a `pub fn name(cfg, ckpt, device, out) -> Result<Value>`, re-exported
//! here, plus its `Protocol` variant in `cli.rs` and its arm in `commands/eval.rs`.

mod classifier;
mod ensemble;
mod finetune;
mod knn;
mod linear;
mod output;
mod robust;
mod semi;
mod transfer;
mod tsne;

pub use classifier::*;
pub use ensemble::ensemble;
pub use finetune::{finetune, finetune_rows};
pub use knn::{knn, knn_accuracy};
pub use linear::{linear, linear_with_data};
pub use output::*;
pub use robust::robust;
pub use semi::{semi, semi_subset};
pub use transfer::transfer;
pub use tsne::{silhouette, tsne, tsne_2d};

use crate::checkpoint;
use crate::config::Config;
use crate::data::store::Store;
use crate::model::{Layout, StGcn};
use crate::stream::Stream;
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Both splits of a store as host tensors `(N, C, T, V, M)` and labels `(N,)`.
pub struct EvalData {
    /// Training inputs (joint stream, CPU).
    pub train_x: Tensor,
    /// Training labels (int64, CPU).
    pub train_y: Tensor,
    /// Test inputs.
    pub test_x: Tensor,
    /// Test labels.
    pub test_y: Tensor,
    /// Training sample names.
    pub train_names: Vec<String>,
    /// Number of classes.
    pub num_classes: i64,
}

fn to_tensors(
    split: crate::data::store::SplitData,
    shape: [usize; 4],
) -> (Tensor, Tensor, Vec<String>) {
    let n = split.y.len() as i64;
    let dims = [
        n,
        shape[0] as i64,
        shape[1] as i64,
        shape[2] as i64,
        shape[3] as i64,
    ];
    (
        Tensor::from_slice(&split.x).view(dims),
        Tensor::from_slice(&split.y),
        split.names,
    )
}

/// Load both splits of the configured store.
pub fn load_data(cfg: &Config) -> Result<EvalData> {
    let store = Store::open(&cfg.data.path)
        .with_context(|| format!("opening {}", cfg.data.path.display()))?;
    let meta = store.meta().clone();
    if meta.layout != cfg.model.layout {
        bail!(
            "{}: layout `{}` does not match model.layout `{}`",
            cfg.data.path.display(),
            meta.layout,
            cfg.model.layout
        );
    }
    let shape = meta.sample_shape();
    let read = |split: &str| -> Result<crate::data::store::SplitData> {
        let data = store.read_split(split)?;
        if let Some((i, v)) = data.first_non_finite() {
            let name = data.names.get(i).map_or("", String::as_str);
            return Err(crate::data::store::non_finite(&cfg.data.path, split, i, name, v).into());
        }
        Ok(data)
    };
    let (train_x, train_y, train_names) = to_tensors(read("train")?, shape);
    let (test_x, test_y, _) = to_tensors(read("test")?, shape);
    if train_y.size()[0] == 0 || test_y.size()[0] == 0 {
        bail!(
            "{}: the train and test splits must both be non-empty",
            cfg.data.path.display()
        );
    }
    Ok(EvalData {
        train_x,
        train_y,
        test_x,
        test_y,
        train_names,
        num_classes: meta.num_classes as i64,
    })
}

/// An encoder in its own VarStore, from a checkpoint or (when `None`) randomly
/// initialised from `run.seed`.
pub fn load_encoder(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
) -> Result<(nn::VarStore, StGcn)> {
    tch::manual_seed(cfg.run.seed as i64);
    let vs = nn::VarStore::new(device);
    let enc = StGcn::new(vs.root(), &cfg.layout(), &cfg.encoder());
    if let Some(path) = ckpt {
        let state = checkpoint::encoder_state(path)?;
        checkpoint::load_into(&vs, "", &state, path)?;
    }
    Ok((vs, enc))
}

/// Eval-mode features `(N, F)` on `device` for host inputs `x`, in batches.
pub fn features(
    enc: &StGcn,
    x: &Tensor,
    stream: Stream,
    layout: &Layout,
    drop: &[usize],
    batch: usize,
    device: Device,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = (batch as i64).min(n - start);
        let xb = stream.apply(&x.narrow(0, start, len).to_device(device), layout);
        out.push(enc.forward_drop(&xb, drop, false));
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// An error when `t` holds a NaN or an infinity (`what` names it: features of a split,
/// scores of a file): evaluation never reports figures computed from them.
pub fn check_finite(t: &Tensor, what: &str) -> Result<()> {
    let bad = t.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
    if bad > 0 {
        bail!(
            "{what}: {bad} non-finite value(s) (of {}); the encoder or the input is broken",
            t.numel()
        );
    }
    Ok(())
}

/// Eval-mode features of both splits (configured stream, no joints removed).
pub fn split_features(
    enc: &crate::model::StGcn,
    data: &EvalData,
    cfg: &Config,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let layout = cfg.layout();
    let f = |x: &Tensor| {
        features(
            enc,
            x,
            cfg.data.stream,
            &layout,
            &[],
            cfg.eval.batch_size,
            device,
        )
    };
    let (train_f, test_f) = (f(&data.train_x), f(&data.test_x));
    check_finite(&train_f, "features of the train split")?;
    check_finite(&test_f, "features of the test split")?;
    Ok((train_f, test_f))
}
