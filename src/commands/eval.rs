//! `pstl eval`: one downstream protocol ([`crate::eval`]) into its folder, with a
//! one-line summary that names each figure.

use super::{print_summary, setup_device};
use crate::cli::{EvalArgs, GlobalOpts, Protocol};
use crate::eval::EvalOutput;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;

/// `pstl eval <protocol> --config C --checkpoint ENC`.
pub fn run(a: EvalArgs, g: &GlobalOpts) -> Result<()> {
    let mut cfg = crate::cli::resolve_config(&a.cfg, g)?;
    cfg.eval.robust_part_sets.extend(a.parts.iter().cloned());
    if !a.parts.is_empty() {
        cfg.validate(&format!("--parts {}", a.parts.join(" ")))?;
    }
    let device = setup_device(&cfg)?;
    let name = format!("{:?}", a.protocol).to_lowercase();
    let dir: PathBuf = a
        .out
        .clone()
        .unwrap_or_else(|| cfg.run.dir.join(&cfg.run.name).join(format!("eval-{name}")));
    let out =
        EvalOutput::new(&dir)?.with_class_names(crate::data::classes::for_store(&cfg.data.path));
    let ckpt = a.checkpoint.as_deref();
    let v = match a.protocol {
        Protocol::Linear => crate::eval::linear(&cfg, ckpt, device, &out)?,
        Protocol::Knn => crate::eval::knn(&cfg, ckpt, device, &out)?,
        Protocol::Finetune => crate::eval::finetune(&cfg, ckpt, device, &out)?,
        Protocol::Semi => crate::eval::semi(&cfg, ckpt, device, &out)?,
        Protocol::Transfer => crate::eval::transfer(&cfg, ckpt, device, &out)?,
        Protocol::Tsne => crate::eval::tsne(&cfg, ckpt, device, &out)?,
        Protocol::Robust => crate::eval::robust(&cfg, ckpt, a.classifier.as_deref(), device, &out)?,
        Protocol::Ensemble => {
            let weights = if a.weights.is_empty() {
                cfg.eval.ensemble_weights.clone()
            } else {
                a.weights.clone()
            };
            crate::eval::ensemble(&cfg, &a.scores, &weights, &out)?
        }
    };
    // Written once the protocol succeeded: a failed command leaves the old one.
    crate::rundir::prepare_run_dir(&dir, &cfg)?;
    let text = format!(
        "eval {name}: {} (details in {})",
        summary(&v),
        dir.join("results.json").display()
    );
    let mut out = serde_json::Map::new();
    out.insert("command".into(), json!("eval"));
    out.insert("protocol".into(), json!(name));
    out.insert("results".into(), json!(dir.join("results.json")));
    if let Some(obj) = v.as_object() {
        out.extend(
            obj.iter()
                .filter(|(k, _)| *k != "config")
                .map(|(k, x)| (k.clone(), x.clone())),
        );
    }
    print_summary(g, &text, serde_json::Value::Object(out));
    Ok(())
}

/// The figures of a results object on one line, each named by what it is: top-1 of
/// the best epoch (the paper's figure) and of the last, both per-sample.
fn summary(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let num = |x: Option<&Value>| x.and_then(Value::as_f64);
    let trained = |o: &Value| -> Option<String> {
        let best = num(o.get("top1_best"))?;
        let last = num(o.get("top1_last")).unwrap_or(f64::NAN);
        Some(format!(
            "top-1 {best:.2} best epoch / {last:.2} last epoch (per-sample)"
        ))
    };
    let mut parts = Vec::new();
    if let Some(t) = trained(v) {
        parts.push(t);
    }
    let Some(obj) = v.as_object() else {
        return String::new();
    };
    for (k, val) in obj {
        let plain = k.starts_with("top1_k") || k == "top1" || k == "top5" || k == "top1_full";
        if plain {
            if let Some(n) = val.as_f64() {
                parts.push(format!("{k}={n:.2}"));
            }
        } else if k.starts_with("semi") || k == "linear" || k == "finetune" {
            if let Some(t) = trained(val) {
                parts.push(format!("{k}: {t}"));
            }
        }
    }
    if let (Some(Value::Object(feat)), Some(map)) =
        (obj.get("silhouette_features"), obj.get("silhouette_tsne"))
    {
        for (name, f) in feat {
            if let (Some(f), Some(t)) = (f.as_f64(), num(map.get(name))) {
                parts.push(format!(
                    "{name}: silhouette {f:.3} features / {t:.3} t-SNE map"
                ));
            }
        }
    }
    if let Some(mode) = obj.get("mode").and_then(Value::as_str) {
        parts.push(format!("(ensemble of {mode})"));
    }
    parts.join("; ")
}
