//! The protocols themselves; see the module header of `eval`.

use super::{
    check_finite, classifier, confusion, features, load_data, load_encoder, topk_accuracy, EvalData,
};
use crate::augment::augment;
use crate::config::{Config, EnsembleMode};
use crate::optim::{cosine, Adam};
use crate::progress::Progress;
use crate::rng::PstlRng;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};

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

/// Where a protocol writes, and what it has written.
pub struct EvalOutput {
    /// Output folder.
    pub dir: PathBuf,
    /// Class names for the confusion matrix and the per-class table (may be empty).
    pub class_names: Vec<String>,
}

impl EvalOutput {
    /// Create `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(EvalOutput {
            dir: dir.to_path_buf(),
            class_names: Vec::new(),
        })
    }

    /// Use `names` in plots and tables ([`crate::data::classes`]).
    pub fn with_class_names(mut self, names: Vec<String>) -> Self {
        self.class_names = names;
        self
    }

    /// `results.json`, atomically.
    pub fn write_results(&self, v: &Value) -> Result<PathBuf> {
        let path = self.dir.join("results.json");
        crate::io::atomic_write(&path, serde_json::to_string_pretty(v)?.as_bytes())?;
        Ok(path)
    }

    /// Per-epoch CSV, accuracy curve and (for the last epoch) scores and confusion.
    pub fn write_training(&self, name: &str, res: &ClassifierResult) -> Result<()> {
        let csv_path = self.dir.join(format!("{name}_epochs.csv"));
        crate::io::atomic_write_with(&csv_path, |tmp| {
            let mut w = csv::Writer::from_path(tmp)?;
            for r in &res.epochs {
                w.serialize(r)?;
            }
            w.flush()?;
            Ok(())
        })?;
        let top1: Vec<(f64, f64)> = res
            .epochs
            .iter()
            .map(|r| (r.epoch as f64, r.test_top1))
            .collect();
        let top5: Vec<(f64, f64)> = res
            .epochs
            .iter()
            .map(|r| (r.epoch as f64, r.test_top5))
            .collect();
        crate::plot::line_plot(
            &self.dir.join(format!("{name}_accuracy.png")),
            &format!("{name}: test accuracy"),
            "epoch",
            "accuracy (%)",
            &[("top-1".to_string(), top1), ("top-5".to_string(), top5)],
            false,
        )
    }

    /// `scores.npy` (test logits), `confusion.png` and `per_class.md` (per-class top-1).
    pub fn write_scores(
        &self,
        prefix: &str,
        logits: &Tensor,
        y: &Tensor,
        classes: i64,
    ) -> Result<()> {
        check_finite(logits, &format!("{prefix}test scores"))?;
        let logits = logits
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let shape: Vec<usize> = logits.size().iter().map(|&d| d as usize).collect();
        let data: Vec<f32> = Vec::try_from(logits.flatten(0, -1))?;
        crate::data::npy::write_npy_f32(
            &self.dir.join(format!("{prefix}scores.npy")),
            &data,
            &shape,
        )?;
        let matrix = confusion(&logits, y, classes);
        crate::io::atomic_write(
            &self.dir.join(format!("{prefix}per_class.md")),
            per_class_table(&matrix, &self.class_names).as_bytes(),
        )?;
        crate::plot::confusion_plot_named(
            &self.dir.join(format!("{prefix}confusion.png")),
            "confusion (rows: true class)",
            &matrix,
            true,
            &self.class_names,
        )
    }
}

/// Shuffled mini-batches of `0..n` for `epoch` under `seed`.
fn batches(n: usize, batch: usize, seed: u64, epoch: usize) -> Vec<Vec<i64>> {
    let mut idx: Vec<i64> = (0..n as i64).collect();
    let mut rng = PstlRng::seed_from_u64(crate::train::step_seed(seed, epoch as u64));
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
        rows.push(EpochRow {
            epoch,
            lr,
            train_loss: loss_sum.double_value(&[]) / count.max(1) as f64,
            test_top1: topk_accuracy(&logits, test_y, 1),
            test_top5: topk_accuracy(&logits, test_y, 5),
            test_top1_batch_mean: batch_mean_top1(&logits, test_y, e.batch_size),
        });
        bar.set_message(format!(
            "test top-1 {:.2}",
            rows.last().map_or(0.0, |r| r.test_top1)
        ));
        last_logits = logits;
        bar.inc(1);
    }
    bar.finish();
    Ok((vs, fc, summarise(rows), last_logits))
}

fn summarise(epochs: Vec<EpochRow>) -> ClassifierResult {
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

/// What the accuracy figures of a results object mean (written into every one).
pub const ACCURACY_NOTE: &str = "top-1/top-5 are per-sample test accuracies (percent). \
top1_best: the best epoch's, what the authors report and what `pstl report` compares \
with the paper; top1_last: the last epoch's; top1_best_batch_mean: the best epoch's \
accuracy averaged over test batches as the authors' logger computes it (equal to \
per-sample unless the last batch is partial; per-sample is the correct average).";

/// Top-1/top-5 (best and last epoch) into a results object.
fn add_classifier_figures(v: &mut Value, res: &ClassifierResult) {
    v["top1_best"] = json!(res.best_top1);
    v["top1_last"] = json!(res.last_top1);
    v["top5_best"] = json!(res.best_top5);
    v["top5_last"] = json!(res.last_top5);
    v["best_epoch"] = json!(res.best_epoch);
    v["top1_best_batch_mean"] = json!(res.best_top1_batch_mean);
    v["headline"] = json!("top1_best");
    v["accuracy_note"] = json!(ACCURACY_NOTE);
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

/// `{"dataset": .., "benchmark": .., "num_classes": ..}` from the store's attributes
/// (what `pstl report` files a result under); null when the store cannot be read.
fn benchmark_json(cfg: &Config) -> Value {
    match crate::data::store::Store::open(&cfg.data.path) {
        Ok(store) => {
            let m = store.meta();
            json!({"dataset": m.dataset, "benchmark": m.benchmark, "num_classes": m.num_classes})
        }
        Err(_) => Value::Null,
    }
}

/// Markdown table of per-class test samples and top-1 (%) from a confusion matrix.
pub fn per_class_table(matrix: &[Vec<u64>], names: &[String]) -> String {
    let mut s = String::from("| class | name | test samples | top-1 (%) |\n|---|---|---|---|\n");
    for (t, row) in matrix.iter().enumerate() {
        let n: u64 = row.iter().sum();
        let hit = row.get(t).copied().unwrap_or(0);
        let acc = if n > 0 {
            format!("{:.2}", 100.0 * hit as f64 / n as f64)
        } else {
            "n/a".into()
        };
        let name = names.get(t).map(String::as_str).unwrap_or("");
        s.push_str(&format!("| {t} | {name} | {n} | {acc} |\n"));
    }
    s
}

fn base_json(cfg: &Config, protocol: &str, ckpt: Option<&Path>) -> Result<Value> {
    Ok(json!({
        "protocol": protocol,
        "dataset": cfg.data.path.display().to_string(),
        "benchmark": benchmark_json(cfg),
        "stream": cfg.data.stream.name(),
        "checkpoint": ckpt.map(|p| p.display().to_string()),
        "checkpoint_sha256": match ckpt { Some(p) => Some(crate::io::sha256_file(p)?), None => None },
        "config": toml::Value::try_from(cfg)?,
    }))
}

/// Linear probe (frozen encoder, features computed once: no augmentation is used).
pub fn linear(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    out: &EvalOutput,
) -> Result<Value> {
    let data = load_data(cfg)?;
    linear_with_data(cfg, ckpt, device, out, &data)
}

/// [`linear`] on already-loaded data.
pub fn linear_with_data(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    out: &EvalOutput,
    data: &EvalData,
) -> Result<Value> {
    let (_evs, enc) = load_encoder(cfg, ckpt, device)?;
    tracing::info!("linear: encoder frozen; features computed once and cached (no augmentation)");
    let (train_f, test_f) = split_features(&enc, data, cfg, device)?;
    let (fc_vs, _fc, res, logits) = train_linear_on_features(
        &train_f,
        &data.train_y,
        &test_f,
        &data.test_y,
        data.num_classes,
        cfg,
        "linear",
    )?;
    out.write_training("linear", &res)?;
    out.write_scores("", &logits, &data.test_y, data.num_classes)?;
    save_classifier(&out.dir.join("classifier.safetensors"), &fc_vs, None, cfg)?;
    let mut v = base_json(cfg, "linear", ckpt)?;
    v["features_cached"] = json!(true);
    add_classifier_figures(&mut v, &res);
    out.write_results(&v)?;
    Ok(v)
}

/// Cosine k-NN on encoder features, majority vote (ties go to the higher summed
/// similarity).
pub fn knn(cfg: &Config, ckpt: Option<&Path>, device: Device, out: &EvalOutput) -> Result<Value> {
    let data = load_data(cfg)?;
    let (_evs, enc) = load_encoder(cfg, ckpt, device)?;
    let (train_f, test_f) = split_features(&enc, &data, cfg, device)?;
    let accs = knn_accuracy(
        &train_f,
        &data.train_y,
        &test_f,
        &data.test_y,
        data.num_classes,
        &cfg.eval.knn_k,
    );
    let mut v = base_json(cfg, "knn", ckpt)?;
    for (k, acc) in cfg.eval.knn_k.iter().zip(&accs) {
        v[format!("top1_k{k}")] = json!(acc);
    }
    let bars: Vec<(String, f64)> = cfg
        .eval
        .knn_k
        .iter()
        .zip(&accs)
        .map(|(k, a)| (format!("k={k}"), *a))
        .collect();
    crate::plot::bar_plot(
        &out.dir.join("knn_accuracy.png"),
        "k-NN top-1",
        "accuracy (%)",
        &bars,
    )?;
    out.write_results(&v)?;
    Ok(v)
}

/// k-NN top-1 (percent) for every k in `ks`.
pub fn knn_accuracy(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    classes: i64,
    ks: &[usize],
) -> Vec<f64> {
    let _guard = tch::no_grad_guard();
    let device = train_f.device();
    let a = train_f.g_div(
        &train_f
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12),
    );
    let b = test_f.g_div(
        &test_f
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12),
    );
    let train_y = train_y.to_device(device);
    let test_y = test_y.to_device(device);
    let kmax = (*ks.iter().max().unwrap_or(&1) as i64).min(a.size()[0]);
    let n = b.size()[0];
    let mut hits = vec![0i64; ks.len()];
    let chunk = 1024;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let sim = b.narrow(0, start, len).matmul(&a.tr());
        let (vals, idx) = sim.topk(kmax, 1, true, true);
        let labels = train_y
            .index_select(0, &idx.flatten(0, -1))
            .view([len, kmax]);
        let truth = test_y.narrow(0, start, len);
        for (h, &k) in hits.iter_mut().zip(ks) {
            let k = (k as i64).min(kmax);
            let onehot = labels.narrow(1, 0, k).one_hot(classes).to_kind(Kind::Float);
            let votes = onehot.sum_dim_intlist(1, false, Kind::Float)
                + (onehot * vals.narrow(1, 0, k).unsqueeze(-1)).sum_dim_intlist(
                    1,
                    false,
                    Kind::Float,
                ) * 1e-3;
            let pred = votes.argmax(1, false);
            *h += pred.eq_tensor(&truth).sum(Kind::Int64).int64_value(&[]);
        }
        start += len;
    }
    hits.iter()
        .map(|&h| 100.0 * h as f64 / n.max(1) as f64)
        .collect()
}

/// Fine-tune encoder + classifier on the training rows `rows` (all when `None`).
pub fn finetune_rows(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    data: &EvalData,
    rows: Option<&[i64]>,
    label: &str,
) -> Result<(nn::VarStore, nn::VarStore, ClassifierResult, Tensor)> {
    let (enc_vs, enc) = load_encoder(cfg, ckpt, device)?;
    let fc_vs = nn::VarStore::new(device);
    let fc = classifier(&fc_vs, cfg.model.feature_dim, data.num_classes);
    let mut params: Vec<(String, Tensor)> = enc_vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, v)| (format!("encoder.{k}"), v))
        .collect();
    params.extend(
        fc_vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad()),
    );
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut adam = Adam::from_params(params, cfg.eval.weight_decay);
    let layout = cfg.layout();
    let e = &cfg.eval;
    let all: Vec<i64> = (0..data.train_y.size()[0]).collect();
    let rows = rows.unwrap_or(&all);
    let mut history = Vec::new();
    let mut bar = Progress::with_plain_lines(label, e.finetune_epochs as u64);
    let mut last_logits = Tensor::zeros([0], (Kind::Float, device));
    for epoch in 0..e.finetune_epochs {
        let lr = cosine(e.finetune_lr, epoch as f64, e.finetune_epochs);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut count = 0;
        for (i, b) in batches(rows.len(), e.batch_size, cfg.run.seed, epoch)
            .iter()
            .enumerate()
        {
            if b.len() < 2 {
                continue; // batch norm needs two samples
            }
            let sel: Vec<i64> = b.iter().map(|&j| rows[j as usize]).collect();
            let idx = Tensor::from_slice(&sel);
            // Stream first, then augment, as in pretraining (`train::pstl_views`).
            let x = data.train_x.index_select(0, &idx).to_device(device);
            let mut x = cfg.data.stream.apply(&x, &layout);
            if e.finetune_augment {
                let mut rng = PstlRng::seed_from_u64(crate::train::step_seed(
                    cfg.run.seed,
                    (epoch * 1_000_003 + i) as u64,
                ));
                x = augment(&x, &cfg.augment, &layout, &mut rng);
            }
            let y = data.train_y.index_select(0, &idx).to_device(device);
            let logits = enc.forward_t(&x, true).apply(&fc);
            let loss = logits.cross_entropy_for_logits(&y);
            adam.zero_grad();
            loss.backward();
            adam.step(lr);
            loss_sum += loss.detach();
            count += 1;
        }
        let test_f = features(
            &enc,
            &data.test_x,
            cfg.data.stream,
            &layout,
            &[],
            e.batch_size,
            device,
        );
        let logits = tch::no_grad(|| fc.forward(&test_f));
        history.push(EpochRow {
            epoch,
            lr,
            train_loss: loss_sum.double_value(&[]) / count.max(1) as f64,
            test_top1: topk_accuracy(&logits, &data.test_y, 1),
            test_top5: topk_accuracy(&logits, &data.test_y, 5),
            test_top1_batch_mean: batch_mean_top1(&logits, &data.test_y, e.batch_size),
        });
        bar.set_message(format!(
            "test top-1 {:.2}",
            history.last().map_or(0.0, |r| r.test_top1)
        ));
        last_logits = logits;
        bar.inc(1);
    }
    bar.finish();
    Ok((enc_vs, fc_vs, summarise(history), last_logits))
}

/// Fine-tune on all training labels.
pub fn finetune(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    out: &EvalOutput,
) -> Result<Value> {
    let data = load_data(cfg)?;
    let (enc_vs, fc_vs, res, logits) = finetune_rows(cfg, ckpt, device, &data, None, "finetune")?;
    out.write_training("finetune", &res)?;
    out.write_scores("", &logits, &data.test_y, data.num_classes)?;
    save_classifier(
        &out.dir.join("classifier.safetensors"),
        &fc_vs,
        Some(&enc_vs),
        cfg,
    )?;
    let mut v = base_json(cfg, "finetune", ckpt)?;
    add_classifier_figures(&mut v, &res);
    out.write_results(&v)?;
    Ok(v)
}

/// Per-class subset of `percent`% of the labels: `round(p * count)` rows of every
/// class, drawn with `seed`, rounding half to even as Python's `round` in the authors'
/// `Feeder_semi` (YujieOuO/PSTL `dataset.py`), so a class may get none; `min_one`
/// takes at least one of every class instead. Sorted row indices.
pub fn semi_subset(labels: &[i64], percent: f64, seed: u64, min_one: bool) -> Vec<i64> {
    let mut by_class: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (i, &y) in labels.iter().enumerate() {
        by_class.entry(y).or_default().push(i as i64);
    }
    let mut rng = PstlRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for rows in by_class.values_mut() {
        let take = (percent / 100.0 * rows.len() as f64).round_ties_even() as usize;
        let take = take.clamp(usize::from(min_one), rows.len());
        rows.shuffle(&mut rng);
        out.extend_from_slice(&rows[..take]);
    }
    out.sort_unstable();
    out
}

/// Semi-supervised fine-tuning on `eval.semi_percents` of the labels.
pub fn semi(cfg: &Config, ckpt: Option<&Path>, device: Device, out: &EvalOutput) -> Result<Value> {
    let data = load_data(cfg)?;
    let labels: Vec<i64> = Vec::try_from(&data.train_y)?;
    let mut v = base_json(cfg, "semi", ckpt)?;
    for &p in &cfg.eval.semi_percents {
        let rows = semi_subset(&labels, p, cfg.run.seed, cfg.eval.semi_min_one);
        if rows.len() < 2 {
            tracing::warn!(
                "semi {p}%: {} labelled sample(s), nothing to fine-tune on \
                 (round({p}% of each class) is 0; eval.semi_min_one = true takes one per class)",
                rows.len()
            );
        }
        let tag = format!("semi{p}");
        let names: Vec<&str> = rows
            .iter()
            .map(|&r| data.train_names[r as usize].as_str())
            .collect();
        crate::io::atomic_write(
            &out.dir.join(format!("{tag}_subset.json")),
            serde_json::to_string_pretty(
                &json!({"percent": p, "seed": cfg.run.seed, "indices": rows, "names": names}),
            )?
            .as_bytes(),
        )?;
        let (_e, _f, res, logits) = finetune_rows(cfg, ckpt, device, &data, Some(&rows), &tag)?;
        out.write_training(&tag, &res)?;
        out.write_scores(&format!("{tag}_"), &logits, &data.test_y, data.num_classes)?;
        v[tag] = json!({
            "samples": rows.len(),
            "top1_best": res.best_top1,
            "top1_last": res.last_top1,
            "top1_best_batch_mean": res.best_top1_batch_mean,
            "best_epoch": res.best_epoch,
        });
    }
    v["headline"] = json!("top1_best");
    v["accuracy_note"] = json!(ACCURACY_NOTE);
    out.write_results(&v)?;
    Ok(v)
}

/// Transfer: linear probe and fine-tune on the configured (target) dataset with an
/// encoder pretrained elsewhere.
pub fn transfer(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    out: &EvalOutput,
) -> Result<Value> {
    let Some(src) = ckpt else {
        bail!("transfer needs --checkpoint from the source dataset")
    };
    let lin_out =
        EvalOutput::new(&out.dir.join("linear"))?.with_class_names(out.class_names.clone());
    let lin = linear(cfg, Some(src), device, &lin_out)?;
    let ft_out =
        EvalOutput::new(&out.dir.join("finetune"))?.with_class_names(out.class_names.clone());
    let ft = finetune(cfg, Some(src), device, &ft_out)?;
    let mut v = base_json(cfg, "transfer", ckpt)?;
    v["linear"] = json!({"top1_best": lin["top1_best"], "top1_last": lin["top1_last"]});
    v["finetune"] = json!({"top1_best": ft["top1_best"], "top1_last": ft["top1_last"]});
    v["headline"] = json!("top1_best");
    v["accuracy_note"] = json!(ACCURACY_NOTE);
    out.write_results(&v)?;
    Ok(v)
}

/// Practical evaluation: a trained classifier evaluated with joints removed at test
/// time (each body part, and k random joints for k = 1..=robust_max_k, averaged over
/// `robust_draws` fixed-seed draws). Without `--classifier` a linear probe is trained
/// first.
pub fn robust(
    cfg: &Config,
    ckpt: Option<&Path>,
    classifier_path: Option<&Path>,
    device: Device,
    out: &EvalOutput,
) -> Result<Value> {
    let data = load_data(cfg)?;
    let layout = cfg.layout();
    // Named part sets are checked before any training.
    let part_sets = cfg
        .eval
        .robust_part_sets
        .iter()
        .map(|spec| part_set(&layout, spec))
        .collect::<Result<Vec<_>>>()?;
    let cls_path = match classifier_path {
        Some(p) => p.to_path_buf(),
        None => {
            let lin_out =
                EvalOutput::new(&out.dir.join("linear"))?.with_class_names(out.class_names.clone());
            linear_with_data(cfg, ckpt, device, &lin_out, &data)?;
            lin_out.dir.join("classifier.safetensors")
        }
    };
    let model = load_with_classifier(cfg, ckpt, Some(&cls_path), device)?;
    let fc = model
        .fc
        .as_ref()
        .with_context(|| format!("{}: no classifier in the file", cls_path.display()))?;
    let enc = &model.enc;
    let accuracy = |drop: &[usize]| -> f64 {
        let f = features(
            enc,
            &data.test_x,
            cfg.data.stream,
            &layout,
            drop,
            cfg.eval.batch_size,
            device,
        );
        topk_accuracy(&tch::no_grad(|| fc.forward(&f)), &data.test_y, 1)
    };
    let full = accuracy(&[]);
    let mut parts = serde_json::Map::new();
    let mut bars = vec![("none".to_string(), full)];
    for (name, joints) in &layout.parts {
        let a = accuracy(joints);
        parts.insert(name.to_string(), json!(a));
        bars.push((name.to_string(), a));
    }
    let mut sets = serde_json::Map::new();
    for (name, joints) in part_sets {
        let a = accuracy(&joints);
        sets.insert(name.clone(), json!(a));
        bars.push((name, a));
    }
    let mut rng = PstlRng::seed_from_u64(cfg.run.seed);
    let all: Vec<usize> = (0..layout.num_joints).collect();
    let mut by_k = vec![(0.0, full)];
    let mut k_json = serde_json::Map::new();
    for k in 1..=cfg.eval.robust_max_k.min(layout.num_joints - 1) {
        let draws = cfg.eval.robust_draws.max(1);
        let mean = (0..draws)
            .map(|_| {
                let drop: Vec<usize> = all.choose_multiple(&mut rng, k).copied().collect();
                accuracy(&drop)
            })
            .sum::<f64>()
            / draws as f64;
        k_json.insert(k.to_string(), json!(mean));
        by_k.push((k as f64, mean));
    }
    let mut table = String::from("| missing | top-1 (%) |\n|---|---|\n");
    for (name, a) in &bars {
        table.push_str(&format!("| {name} | {a:.2} |\n"));
    }
    for (k, a) in by_k.iter().skip(1) {
        table.push_str(&format!("| {k} random joints | {a:.2} |\n"));
    }
    crate::io::atomic_write(&out.dir.join("robust.md"), table.as_bytes())?;
    crate::plot::bar_plot(
        &out.dir.join("robust_parts.png"),
        "accuracy with a body part missing",
        "top-1 (%)",
        &bars,
    )?;
    crate::plot::line_plot(
        &out.dir.join("robust_k.png"),
        "accuracy against missing joints",
        "random joints removed",
        "top-1 (%)",
        &[("top-1".to_string(), by_k.clone())],
        false,
    )?;
    let mut v = base_json(cfg, "robust", ckpt)?;
    v["classifier"] = json!(cls_path.display().to_string());
    v["top1_full"] = json!(full);
    v["parts"] = Value::Object(parts);
    v["part_sets"] = Value::Object(sets);
    v["random_k"] = Value::Object(k_json);
    out.write_results(&v)?;
    Ok(v)
}

/// Several body parts removed at once: `"left_arm,right_leg"` -> the name
/// `left_arm+right_leg` and the union of their joints (NTU anatomy names, as
/// `Layout::parts`). Unknown names are errors listing the known ones.
pub fn part_set(layout: &crate::model::Layout, spec: &str) -> Result<(String, Vec<usize>)> {
    let mut names = Vec::new();
    let mut joints = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((_, js)) = layout.parts.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = layout.parts.iter().map(|(n, _)| *n).collect();
            bail!(
                "eval.robust_part_sets / --parts: unknown body part `{name}` in `{spec}` (known: {})",
                known.join(", ")
            );
        };
        if !names.contains(&name) {
            names.push(name);
            joints.extend_from_slice(js);
        }
    }
    if names.is_empty() {
        bail!("eval.robust_part_sets / --parts: `{spec}` names no body part");
    }
    Ok((names.join("+"), joints))
}

/// 3-stream ensemble: weighted sum of per-stream scores (`scores.npy`, the test logits
/// of `linear` or `finetune` of each stream) against the test labels of the store.
/// `eval.ensemble_mode` picks raw logits (AimCLR's `ensemble_ntu_cs.py`: 0.6 joint,
/// 0.6 bone, 0.4 motion) or softmax probabilities.
pub fn ensemble(
    cfg: &Config,
    scores: &[PathBuf],
    weights: &[f64],
    out: &EvalOutput,
) -> Result<Value> {
    if scores.is_empty() || scores.len() != weights.len() {
        bail!(
            "ensemble needs one weight per scores file ({} files, {} weights)",
            scores.len(),
            weights.len()
        );
    }
    crate::config::check_weights(weights)
        .map_err(|why| anyhow::anyhow!("--weights {weights:?}: {why}"))?;
    let store = crate::data::store::Store::open(&cfg.data.path)?;
    let y = Tensor::from_slice(store.labels("test")?);
    let mut total: Option<Tensor> = None;
    let mut single = serde_json::Map::new();
    let mut sources = Vec::new();
    let mut classes = None;
    for (path, w) in scores.iter().zip(weights) {
        // The protocol and stream of the scores, from the results.json beside them.
        let sibling = path.with_file_name("results.json");
        let info: Value = std::fs::read_to_string(&sibling)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        sources.push(json!({
            "scores": path.display().to_string(),
            "protocol": info["protocol"],
            "stream": info["stream"],
        }));
        let (data, shape) = crate::data::npy::read_npy_f32(path)?;
        if shape.len() != 2 || shape[0] as i64 != y.size()[0] || shape[1] == 0 {
            bail!(
                "{}: expected scores of shape ({}, classes), got {shape:?}",
                path.display(),
                y.size()[0]
            );
        }
        let (first, c) = *classes.get_or_insert((path, shape[1]));
        if c != shape[1] {
            bail!(
                "{}: {} classes, but {} has {c}: the scores must come from one dataset",
                path.display(),
                shape[1],
                first.display()
            );
        }
        let s = Tensor::from_slice(&data).view([shape[0] as i64, shape[1] as i64]);
        check_finite(&s, &path.display().to_string())?;
        single.insert(path.display().to_string(), json!(topk_accuracy(&s, &y, 1)));
        let p = match cfg.eval.ensemble_mode {
            EnsembleMode::Logits => s * *w,
            EnsembleMode::Softmax => s.softmax(1, Kind::Float) * *w,
        };
        total = Some(match total {
            Some(t) => t + p,
            None => p,
        });
    }
    let Some(total) = total else {
        bail!("ensemble: no scores file");
    };
    let top1 = topk_accuracy(&total, &y, 1);
    let classes = total.size()[1];
    out.write_scores("ensemble_", &total, &y, classes)?;
    let v = json!({
        "protocol": "ensemble",
        "dataset": cfg.data.path.display().to_string(),
        "benchmark": benchmark_json(cfg),
        "mode": cfg.eval.ensemble_mode,
        "weights": weights,
        "sources": sources,
        "single": single,
        "top1": top1,
        "top5": topk_accuracy(&total, &y, 5),
    });
    out.write_results(&v)?;
    Ok(v)
}
