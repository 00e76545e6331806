//! Semi-supervised evaluation (paper §4.2): fine-tuning on 1% / 10% of the labels,
//! drawn per class as the authors' `Feeder_semi`.

use super::{
    finetune::finetune_rows, load_data, output::base_json, output::EvalOutput,
    output::ACCURACY_NOTE,
};
use crate::config::Config;
use crate::rng::PstlRng;
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

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
