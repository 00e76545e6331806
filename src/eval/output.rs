//! What a protocol writes into its folder: `results.json` (with the config, the
//! checkpoint's digest and what the figures mean), per-epoch CSV, accuracy curve,
//! `scores.npy`, confusion matrix and per-class table; the per-epoch curves also as
//! TensorBoard scalars `<name>/<column>` (step = epoch), one event file per command.

use super::{check_finite, classifier::confusion, classifier::ClassifierResult};
use crate::config::Config;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Where a protocol writes, and what it has written.
pub struct EvalOutput {
    /// Output folder.
    pub dir: PathBuf,
    /// Class names for the confusion matrix and the per-class table (may be empty).
    pub class_names: Vec<String>,
    /// The folder's event file, opened at the first curve written.
    events: std::sync::Mutex<Option<crate::tensorboard::EventWriter>>,
}

impl EvalOutput {
    /// Create `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(EvalOutput {
            dir: dir.to_path_buf(),
            class_names: Vec::new(),
            events: std::sync::Mutex::new(None),
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
        self.write_events(name, res)?;
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

    /// The per-epoch rows as TensorBoard scalars `<name>/<column>` at step = epoch.
    fn write_events(&self, name: &str, res: &ClassifierResult) -> Result<()> {
        let mut events = self
            .events
            .lock()
            .map_err(|_| anyhow::anyhow!("event writer of {} poisoned", self.dir.display()))?;
        if events.is_none() {
            *events = Some(crate::tensorboard::EventWriter::create(&self.dir, 0)?);
        }
        let Some(w) = events.as_mut() else {
            return Ok(());
        };
        for r in &res.epochs {
            let values = [
                ("train_loss", r.train_loss),
                ("test_top1", r.test_top1),
                ("test_top5", r.test_top5),
                ("lr", r.lr),
            ]
            .map(|(k, v)| (format!("{name}/{k}"), v));
            w.scalars(r.epoch as u64, &values)?;
        }
        Ok(())
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

/// What the accuracy figures of a results object mean (written into every one).
pub const ACCURACY_NOTE: &str = "top-1/top-5 are per-sample test accuracies (percent). \
top1_best: the best epoch's, what the authors report and what `pstl report` compares \
with the paper; top1_last: the last epoch's; top1_best_batch_mean: the best epoch's \
accuracy averaged over test batches as the authors' logger computes it (equal to \
per-sample unless the last batch is partial; per-sample is the correct average).";

/// Top-1/top-5 (best and last epoch) into a results object.
pub(super) fn add_classifier_figures(v: &mut Value, res: &ClassifierResult) {
    v["top1_best"] = json!(res.best_top1);
    v["top1_last"] = json!(res.last_top1);
    v["top5_best"] = json!(res.best_top5);
    v["top5_last"] = json!(res.last_top5);
    v["best_epoch"] = json!(res.best_epoch);
    v["top1_best_batch_mean"] = json!(res.best_top1_batch_mean);
    v["headline"] = json!("top1_best");
    v["accuracy_note"] = json!(ACCURACY_NOTE);
}

/// `{"dataset": .., "benchmark": .., "num_classes": ..}` from the store's attributes
/// (what `pstl report` files a result under); null when the store cannot be read.
pub(super) fn benchmark_json(cfg: &Config) -> Value {
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

pub(super) fn base_json(cfg: &Config, protocol: &str, ckpt: Option<&Path>) -> Result<Value> {
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
