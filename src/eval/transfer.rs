//! Transfer (paper §4.2): linear probe and fine-tuning on a target dataset with an
//! encoder pretrained on another.

use super::{
    finetune::finetune, linear::linear, output::base_json, output::EvalOutput,
    output::ACCURACY_NOTE,
};
use crate::config::Config;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use tch::Device;

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
