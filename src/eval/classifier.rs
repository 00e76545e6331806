//! The classifier of the downstream protocols and its training: the linear layer
//! `fc`, the training loop on fixed features (linear probe), accuracy figures (top-k,
//! the authors' batch mean, confusion matrix), and saving and loading a classifier.

use super::load_encoder;
use crate::config::Config;
use crate::model::init;
use crate::optim::{cosine, Adam};
use crate::progress::Progress;
use crate::rng::{step_seed, PstlRng};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Fraction (percent) of rows whose label is among the `k` highest logits.
pub fn topk_accuracy(logits: &Tensor, y: &Tensor, k: i64) -> f64 {
    let k = k.min(logits.size()[1]);
    let (_, idx) = logits.topk(k, 1, true, true);
    let hit = idx
        .eq_tensor(&y.to_device(idx.device()).view([-1, 1]))
        .any_dim(1, false);
    100.0
        * hit
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
}

/// The linear classifier `fc` of the downstream protocols (xavier-normal, bias 0).
pub fn classifier(vs: &nn::VarStore, feature_dim: i64, classes: i64) -> nn::Linear {
    init::linear_xavier(&(vs.root() / "fc"), feature_dim, classes)
}

/// Confusion matrix `classes x classes` (rows: true class).
pub fn confusion(logits: &Tensor, y: &Tensor, classes: i64) -> Vec<Vec<u64>> {
    let pred: Vec<i64> =
        Vec::try_from(logits.argmax(1, false).to_device(Device::Cpu)).unwrap_or_default();
    let truth: Vec<i64> = Vec::try_from(y.to_device(Device::Cpu)).unwrap_or_default();
    let mut m = vec![vec![0u64; classes as usize]; classes as usize];
    for (t, p) in truth.iter().zip(&pred) {
        if let (Some(row), true) = (m.get_mut(*t as usize), *p >= 0 && *p < classes) {
            row[*p as usize] += 1;
        }
    }
    m
}

/// Per-epoch figures of a trained protocol.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRow {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training cross-entropy.
    pub train_loss: f64,
    /// Test top-1 (percent).
    pub test_top1: f64,
    /// Test top-5 (percent).
    pub test_top5: f64,
    /// Test top-1 averaged over test batches of `eval.batch_size` in order, as the
    /// authors' logger does (differs from per-sample when the last batch is partial).
    pub test_top1_batch_mean: f64,
}

impl EpochRow {
    /// An epoch's row from its test `logits` against labels `y` (`batch`: the test batch
    /// of the authors' batch-mean figure).
    pub(super) fn of_test(
        epoch: usize,
        lr: f64,
        train_loss: f64,
        logits: &Tensor,
        y: &Tensor,
        batch: usize,
    ) -> Self {
        EpochRow {
            epoch,
            lr,
            train_loss,
            test_top1: topk_accuracy(logits, y, 1),
            test_top5: topk_accuracy(logits, y, 5),
            test_top1_batch_mean: batch_mean_top1(logits, y, batch),
        }
    }
}

/// Outcome of training a classifier.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierResult {
    /// Best test top-1 over epochs.
    pub best_top1: f64,
    /// Epoch of the best top-1.
    pub best_epoch: usize,
    /// Top-1 after the last epoch.
    pub last_top1: f64,
    /// Top-5 after the last epoch.
    pub last_top5: f64,
    /// Best top-5 over epochs.
    pub best_top5: f64,
    /// Best batch-averaged top-1 over epochs (the figure the authors' logs print).
    pub best_top1_batch_mean: f64,
    /// Every epoch.
    pub epochs: Vec<EpochRow>,
}

/// Shuffled mini-batches of `0..n` for `epoch` under `seed`.
pub(super) fn batches(n: usize, batch: usize, seed: u64, epoch: usize) -> Vec<Vec<i64>> {
    let mut idx: Vec<i64> = (0..n as i64).collect();
    let mut rng = PstlRng::seed_from_u64(step_seed(seed, epoch as u64));
    idx.shuffle(&mut rng);
    idx.chunks(batch).map(|c| c.to_vec()).collect()
}

/// Train `fc` on fixed features (the linear probe); test after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_linear_on_features(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    classes: i64,
    cfg: &Config,
    label: &str,
) -> Result<(nn::VarStore, nn::Linear, ClassifierResult, Tensor)> {
    let device = train_f.device();
    tch::manual_seed(cfg.run.seed as i64);
    let vs = nn::VarStore::new(device);
    let fc = classifier(&vs, train_f.size()[1], classes);
    let mut adam = Adam::new(&vs, cfg.eval.weight_decay);
    let e = &cfg.eval;
    let train_y = train_y.to_device(device);
    let n = train_f.size()[0] as usize;
    let mut rows = Vec::new();
    let mut bar = Progress::with_plain_lines(label, e.linear_epochs as u64);
    let mut last_logits = Tensor::zeros([0], (Kind::Float, device));
    for epoch in 0..e.linear_epochs {
        let lr = cosine(e.linear_lr, epoch as f64, e.linear_epochs);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut count = 0;
        for b in batches(n, e.batch_size, cfg.run.seed, epoch) {
            let idx = Tensor::from_slice(&b).to_device(device);
            let logits = train_f.index_select(0, &idx).apply(&fc);
            let loss = logits.cross_entropy_for_logits(&train_y.index_select(0, &idx));
            adam.zero_grad();
            loss.backward();
            adam.step(lr);
            loss_sum += loss.detach();
            count += 1;
        }
        let logits = tch::no_grad(|| test_f.apply(&fc));
        let train_loss = loss_sum.double_value(&[]) / count.max(1) as f64;
        let row = EpochRow::of_test(epoch, lr, train_loss, &logits, test_y, e.batch_size);
        bar.set_message(format!("test top-1 {:.2}", row.test_top1));
        rows.push(row);
        last_logits = logits;
        bar.inc(1);
    }
    bar.finish();
    Ok((vs, fc, summarise(rows), last_logits))
}

pub(super) fn summarise(epochs: Vec<EpochRow>) -> ClassifierResult {
    let best = epochs
        .iter()
        .max_by(|a, b| a.test_top1.total_cmp(&b.test_top1))
        .cloned()
        .unwrap_or(EpochRow {
            epoch: 0,
            lr: 0.0,
            train_loss: f64::NAN,
            test_top1: 0.0,
            test_top5: 0.0,
            test_top1_batch_mean: 0.0,
        });
    let last = epochs.last().cloned().unwrap_or(best.clone());
    ClassifierResult {
        best_top1: best.test_top1,
        best_epoch: best.epoch,
        last_top1: last.test_top1,
        last_top5: last.test_top5,
        best_top5: epochs.iter().map(|r| r.test_top5).fold(0.0, f64::max),
        best_top1_batch_mean: epochs
            .iter()
            .map(|r| r.test_top1_batch_mean)
            .fold(0.0, f64::max),
        epochs,
    }
}

/// Save a classifier (`fc.weight`, `fc.bias`), optionally with its encoder (`encoder.*`).
pub fn save_classifier(
    path: &Path,
    fc_vs: &nn::VarStore,
    enc_vs: Option<&nn::VarStore>,
    cfg: &Config,
) -> Result<()> {
    let mut tensors = crate::checkpoint::state_dict(fc_vs, "fc.", "fc.", 0);
    if let Some(vs) = enc_vs {
        tensors.extend(crate::checkpoint::state_dict(vs, "", "encoder.", 0));
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pstl-classifier".to_string());
    meta.insert("stream".to_string(), cfg.data.stream.name().to_string());
    crate::checkpoint::write_safetensors(path, &tensors, &meta)
}

/// An encoder (from a checkpoint, or randomly initialised) and an optional classifier.
pub struct ClassifierModel {
    /// The encoder's variables.
    pub enc_vs: nn::VarStore,
    /// The encoder.
    pub enc: crate::model::StGcn,
    /// The classifier's variables (empty without one).
    pub fc_vs: nn::VarStore,
    /// The classifier.
    pub fc: Option<nn::Linear>,
}

/// Load an encoder and, optionally, a classifier file; a classifier file that carries
/// `encoder.*` (from fine-tuning) replaces the encoder's weights.
pub fn load_with_classifier(
    cfg: &Config,
    ckpt: Option<&Path>,
    classifier: Option<&Path>,
    device: Device,
) -> Result<ClassifierModel> {
    let (enc_vs, enc) = load_encoder(cfg, ckpt, device)?;
    let fc_vs = nn::VarStore::new(device);
    let fc = match classifier {
        Some(p) => {
            let (fc, enc_state) = load_classifier(p, &fc_vs, cfg.model.feature_dim)?;
            if !enc_state.is_empty() {
                crate::checkpoint::load_into(&enc_vs, "", &enc_state, p)?;
            }
            Some(fc)
        }
        None => None,
    };
    Ok(ClassifierModel {
        enc_vs,
        enc,
        fc_vs,
        fc,
    })
}

/// Load a classifier saved by [`save_classifier`]; returns the `fc` layer and, when
/// the file carries one (fine-tuning), its encoder state.
pub fn load_classifier(
    path: &Path,
    vs: &nn::VarStore,
    feature_dim: i64,
) -> Result<(nn::Linear, BTreeMap<String, Tensor>)> {
    let (all, _) = crate::checkpoint::read_any(path)?;
    let w = all
        .get("fc.weight")
        .with_context(|| format!("{}: missing key `fc.weight`", path.display()))?;
    let classes = w.size()[0];
    let fc = classifier(vs, feature_dim, classes);
    let fc_state: BTreeMap<String, Tensor> = all
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("fc.")
                .map(|s| (s.to_string(), v.shallow_clone()))
        })
        .collect();
    crate::checkpoint::load_into(vs, "fc.", &fc_state, path)?;
    let enc: BTreeMap<String, Tensor> = all
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("encoder.").map(|s| (s.to_string(), v)))
        .collect();
    Ok((fc, enc))
}

/// Top-1 (percent) averaged over consecutive batches of `batch` test rows: the
/// authors' `np.mean` over per-batch accuracies (YujieOuO/PSTL `logger.py`).
pub fn batch_mean_top1(logits: &Tensor, y: &Tensor, batch: usize) -> f64 {
    let n = logits.size()[0];
    let batch = batch.max(1) as i64;
    let mut accs = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        accs.push(topk_accuracy(
            &logits.narrow(0, start, len),
            &y.narrow(0, start, len),
            1,
        ));
        start += len;
    }
    accs.iter().sum::<f64>() / accs.len().max(1) as f64
}
