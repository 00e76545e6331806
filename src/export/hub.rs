//! `pstl export --hub DIR`: a model directory in the layout `huggingface_hub` expects
//! (`model.safetensors`, `config.json`, `README.md` model card), loadable in Python with
//! `pstl_torch.from_pretrained(DIR)`. Nothing is uploaded.
//!
//! `model.safetensors` holds the encoder under `encoder.` with the official keys and,
//! with a classifier, `fc.weight` / `fc.bias`.

use crate::config::Config;
use crate::eval::load_with_classifier;
use crate::stream::Stream;
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// Options of [`export_hub`].
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Frames of the model's input (the training data's `T`).
    pub frames: i64,
    /// Persons of the model's input.
    pub persons: i64,
    /// Stream the encoder was trained on.
    pub stream: Stream,
    /// `results.json` files for the model card (default: found beside the checkpoint).
    pub results: Vec<PathBuf>,
}

/// Write the hub directory `dir` (created; files replaced atomically one by one).
pub fn export_hub(
    cfg: &Config,
    ckpt: &Path,
    classifier: Option<&Path>,
    dir: &Path,
    opts: &HubOptions,
) -> Result<()> {
    let ex = load_with_classifier(cfg, Some(ckpt), classifier, Device::Cpu)?;
    let mut tensors = crate::checkpoint::state_dict(&ex.enc_vs, "", "encoder.", 0);
    let mut num_classes = None;
    if ex.fc.is_some() {
        let fc = crate::checkpoint::state_dict(&ex.fc_vs, "fc.", "fc.", 0);
        num_classes = fc
            .iter()
            .find(|(k, _)| k == "fc.weight")
            .map(|(_, w)| w.size()[0]);
        tensors.extend(fc);
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    crate::checkpoint::write_safetensors(&dir.join("model.safetensors"), &tensors, &meta)?;

    let config = hub_config(cfg, ckpt, opts, num_classes)?;
    crate::io::atomic_write(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    let results = if opts.results.is_empty() {
        find_results(ckpt)
    } else {
        opts.results.clone()
    };
    let mut loaded = Vec::new();
    for path in &results {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        loaded.push((path.clone(), v));
    }
    let mut card = model_card(&config, &loaded);
    card.push_str(&copy_figures(ckpt, dir)?);
    crate::io::atomic_write(&dir.join("README.md"), card.as_bytes())
}

/// The run's pictures, when present beside `ckpt`: the loss curves, the t-SNE maps of
/// `eval-*/` and the sheets of `pstl show --out <run>/show*`, as `(file, caption)`.
fn find_figures(ckpt: &Path) -> Vec<(PathBuf, String)> {
    let Some(dir) = ckpt.parent() else {
        return Vec::new();
    };
    let mut out = vec![(dir.join("loss.png"), "pretraining loss".to_string())];
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        let name = sub
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        if name.starts_with("eval-") {
            out.push((
                sub.join("tsne.png"),
                format!("t-SNE of the test features ({name})"),
            ));
        } else if name.starts_with("show") {
            out.push((
                sub.join("sheet.png"),
                format!("a sample and its PSTL views ({name})"),
            ));
        }
    }
    out.retain(|(p, _)| p.is_file());
    out
}

/// Copy the run's figures into `<hub>/figures/` and return the card's section for them
/// (empty when there are none).
fn copy_figures(ckpt: &Path, hub: &Path) -> Result<String> {
    let figures = find_figures(ckpt);
    if figures.is_empty() {
        return Ok(String::new());
    }
    let run = ckpt.parent().unwrap_or(Path::new("."));
    let mut s = String::from("\n## Figures\n\n");
    for (path, caption) in figures {
        let rel = path.strip_prefix(run).unwrap_or(&path);
        let name = rel.to_string_lossy().replace(['/', '\\'], "-");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        crate::io::atomic_write(&hub.join("figures").join(&name), &bytes)?;
        s.push_str(&format!(
            "![{caption}](figures/{name})\n\n*{caption}* (`{}`)\n\n",
            rel.display()
        ));
    }
    Ok(s)
}

/// `config.json`: architecture, stream, frames, persons, classes and provenance.
fn hub_config(
    cfg: &Config,
    ckpt: &Path,
    opts: &HubOptions,
    num_classes: Option<i64>,
) -> Result<Value> {
    let e = cfg.encoder();
    let layout = cfg.layout();
    let mut v = json!({
        "model_type": "pstl-stgcn",
        "library_name": "pstl-torch",
        "architecture": "ST-GCN encoder at 1/4 width (PSTL, AAAI 2023)",
        "encoder": {
            "in_channels": e.in_channels,
            "base_channels": e.base_channels,
            "feature_dim": e.feature_dim,
            "dropout": e.dropout,
            "temporal_kernel": e.temporal_kernel,
            "edge_importance": e.edge_importance,
        },
        "layout": cfg.model.layout,
        "num_joints": layout.num_joints,
        "stream": opts.stream.name(),
        "frames": opts.frames,
        "persons": opts.persons,
        "input_shape": ["N", e.in_channels, opts.frames, layout.num_joints, opts.persons],
        "pstl_version": env!("CARGO_PKG_VERSION"),
        "source_checkpoint": ckpt.file_name().map(|n| n.to_string_lossy().to_string()),
        "source_checkpoint_sha256": crate::io::sha256_file(ckpt)?,
    });
    if let Some(k) = num_classes {
        v["num_classes"] = json!(k);
    }
    if cfg.data.path.exists() {
        match crate::data::store::Store::open(&cfg.data.path) {
            Ok(store) => {
                let m = store.meta();
                v["dataset"] = json!({
                    "name": m.dataset, "benchmark": m.benchmark,
                    "num_classes": m.num_classes, "frames": m.frames, "persons": m.persons,
                });
            }
            Err(e) => tracing::warn!("hub: dataset details left out: {e:#}"),
        }
    }
    Ok(v)
}

/// `results.json` files of the run that produced `ckpt`: `<dir>/results.json` and
/// `<dir>/eval-*/results.json`, sorted.
fn find_results(ckpt: &Path) -> Vec<PathBuf> {
    let Some(dir) = ckpt.parent() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("eval-"))
        })
        .map(|p| p.join("results.json"))
        .chain(std::iter::once(dir.join("results.json")))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Numeric figures of a results object, one level of nesting flattened (`a.b`).
fn figures(v: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Some(obj) = v.as_object() else {
        return out;
    };
    let skip = |k: &str| k == "config" || k.ends_with("seconds");
    for (k, val) in obj.iter().filter(|(k, _)| !skip(k)) {
        match val {
            Value::Number(n) => out.extend(n.as_f64().map(|x| (k.clone(), x))),
            Value::Object(inner) => out.extend(
                inner
                    .iter()
                    .filter_map(|(k2, x)| x.as_f64().map(|x| (format!("{k}.{k2}"), x))),
            ),
            _ => {}
        }
    }
    out
}

/// The `README.md` model card: YAML front matter, data, protocol, results, usage.
fn model_card(config: &Value, results: &[(PathBuf, Value)]) -> String {
    let get = |k: &str| config.get(k).cloned().unwrap_or(Value::Null);
    let ds: Map<String, Value> = get("dataset").as_object().cloned().unwrap_or_default();
    let dataset = ds.get("name").and_then(Value::as_str).unwrap_or("unknown");
    let benchmark = ds
        .get("benchmark")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut s = format!(
        "---\nlibrary_name: pstl-torch\ntags:\n- skeleton-action-recognition\n- self-supervised-learning\n- pstl\n- st-gcn\n---\n\n\
         # PSTL ST-GCN encoder ({dataset} {benchmark}, {} stream)\n\n\
         Self-supervised skeleton action encoder trained with PSTL (Zhou et al., AAAI 2023) by \
         pstl {}. Input `(N, 3, {}, {}, {})` ({} stream), output \
         features `(N, {})`{}.\n\n",
        get("stream").as_str().unwrap_or("joint"),
        get("pstl_version").as_str().unwrap_or(""),
        get("frames"),
        get("num_joints"),
        get("persons"),
        get("stream").as_str().unwrap_or("joint"),
        config["encoder"]["feature_dim"],
        match config.get("num_classes") {
            Some(k) => format!(", and a linear classifier over {k} classes (`fc.*`)"),
            None => String::new(),
        },
    );
    s.push_str("## Data\n\n");
    if ds.is_empty() {
        s.push_str("The training store was not available when this directory was written.\n\n");
    } else {
        s.push_str(&format!(
            "Dataset `{dataset}`, benchmark `{benchmark}`, {} classes, {} frames, {} persons \
             (pstl HDF5 store, AimCLR's frame-50 normalisation).\n\n",
            ds.get("num_classes").unwrap_or(&Value::Null),
            ds.get("frames").unwrap_or(&Value::Null),
            ds.get("persons").unwrap_or(&Value::Null),
        ));
    }
    s.push_str("## Results\n\n");
    if results.is_empty() {
        s.push_str("No `results.json` was found beside the checkpoint.\n\n");
    }
    for (path, v) in results {
        let protocol = v
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("pretrain");
        s.push_str(&format!(
            "Protocol `{protocol}` (from `{}`):\n\n| figure | value |\n|---|---|\n",
            path.display()
        ));
        for (k, x) in figures(v) {
            s.push_str(&format!("| {k} | {x:.4} |\n"));
        }
        s.push('\n');
    }
    s.push_str(
        "## Usage\n\n```python\nimport pstl_torch\nenc = pstl_torch.from_pretrained(\"THIS_DIR\")  # eval mode\nz = enc(x)  # x: (N, 3, T, 25, M) float32\n```\n\n\
         `model.safetensors` holds the encoder under `encoder.` with the authors' state_dict \
         keys (`A`, `data_bn.*`, `edge_importance.*`, `st_gcn_networks.*`).\n",
    );
    s
}
