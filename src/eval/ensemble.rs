//! The 3-stream ensemble (joint, motion, bone): a weighted sum of per-stream test
//! scores.

use super::{check_finite, classifier::topk_accuracy, output::benchmark_json, output::EvalOutput};
use crate::config::{Config, EnsembleMode};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

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
        sources.push(source_info(path));
        let (data, shape) = read_scores(path, y.size()[0])?;
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

/// The protocol and stream of a scores file, from the `results.json` beside it.
fn source_info(path: &Path) -> Value {
    let sibling = path.with_file_name("results.json");
    let info: Value = std::fs::read_to_string(&sibling)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    json!({
        "scores": path.display().to_string(),
        "protocol": info["protocol"],
        "stream": info["stream"],
    })
}

/// A `scores.npy` of shape `(n, classes)`.
fn read_scores(path: &Path, n: i64) -> Result<(Vec<f32>, Vec<usize>)> {
    let (data, shape) = crate::data::npy::read_npy_f32(path)?;
    if shape.len() != 2 || shape[0] as i64 != n || shape[1] == 0 {
        bail!(
            "{}: expected scores of shape ({}, classes), got {shape:?}",
            path.display(),
            n
        );
    }
    Ok((data, shape))
}
