//! Practical evaluation (paper §4.4): a trained classifier tested with joints removed
//! (each body part, several at once, k random joints).

use super::{
    classifier::load_with_classifier, classifier::topk_accuracy, features,
    linear::linear_with_data, load_data, output::base_json, output::EvalOutput,
};
use crate::config::Config;
use crate::model::{part_set, Layout};
use crate::rng::PstlRng;
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::Path;
use tch::{nn::Module, Device};

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
    let accuracy = |drop: &[usize]| -> f64 {
        let f = features(
            &model.enc,
            &data.test_x,
            cfg.data.stream,
            &layout,
            drop,
            cfg.eval.batch_size,
            device,
        );
        topk_accuracy(&tch::no_grad(|| fc.forward(&f)), &data.test_y, 1)
    };
    let r = measure(cfg, &layout, part_sets, &accuracy);
    write_figures(&r, out)?;
    let mut v = base_json(cfg, "robust", ckpt)?;
    v["classifier"] = json!(cls_path.display().to_string());
    v["top1_full"] = json!(r.full);
    v["parts"] = Value::Object(r.parts);
    v["part_sets"] = Value::Object(r.sets);
    v["random_k"] = Value::Object(r.k_json);
    out.write_results(&v)?;
    Ok(v)
}

/// Top-1 with nothing, each body part, each part set and k random joints removed.
struct Missing {
    full: f64,
    parts: serde_json::Map<String, Value>,
    sets: serde_json::Map<String, Value>,
    k_json: serde_json::Map<String, Value>,
    /// (what is missing, top-1): none, the parts, the part sets.
    bars: Vec<(String, f64)>,
    /// (k, mean top-1) for k = 0, 1, ...
    by_k: Vec<(f64, f64)>,
}

/// Every measurement of the protocol, with `accuracy(drop)` the test top-1 with the
/// joints `drop` removed.
fn measure(
    cfg: &Config,
    layout: &Layout,
    part_sets: Vec<(String, Vec<usize>)>,
    accuracy: &dyn Fn(&[usize]) -> f64,
) -> Missing {
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
    Missing {
        full,
        parts,
        sets,
        k_json,
        bars,
        by_k,
    }
}

/// `robust.md` and the two plots.
fn write_figures(r: &Missing, out: &EvalOutput) -> Result<()> {
    let mut table = String::from("| missing | top-1 (%) |\n|---|---|\n");
    for (name, a) in &r.bars {
        table.push_str(&format!("| {name} | {a:.2} |\n"));
    }
    for (k, a) in r.by_k.iter().skip(1) {
        table.push_str(&format!("| {k} random joints | {a:.2} |\n"));
    }
    crate::io::atomic_write(&out.dir.join("robust.md"), table.as_bytes())?;
    crate::plot::bar_plot(
        &out.dir.join("robust_parts.png"),
        "accuracy with a body part missing",
        "top-1 (%)",
        &r.bars,
    )?;
    crate::plot::line_plot(
        &out.dir.join("robust_k.png"),
        "accuracy against missing joints",
        "random joints removed",
        "top-1 (%)",
        &[("top-1".to_string(), r.by_k.clone())],
        false,
    )
}
