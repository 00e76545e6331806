//! k-NN evaluation: cosine similarity on frozen eval-mode features, majority vote.

use super::{load_data, load_encoder, output::base_json, output::EvalOutput, split_features};
use crate::config::Config;
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;
use tch::{Device, Kind, Tensor};

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
