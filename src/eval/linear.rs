//! Linear evaluation (paper §4.2): a linear classifier on the frozen encoder's
//! eval-mode features, computed once (no augmentation).

use super::{
    classifier::save_classifier, classifier::train_linear_on_features, load_data, load_encoder,
    output::add_classifier_figures, output::base_json, output::EvalOutput, split_features,
    EvalData,
};
use crate::config::Config;
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;
use tch::Device;

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
