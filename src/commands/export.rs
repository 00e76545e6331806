//! `pstl export`: an encoder (and optionally its classifier) as TorchScript,
//! official-key safetensors, a `torch.save` state_dict, or a hub directory
//! ([`crate::export`]).

use super::{print_summary, setup_device};
use crate::cli::{ExportArgs, GlobalOpts};
use crate::config::Config;
use crate::device::device_name;
use crate::export::WeightFormat;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use tch::Device;

/// What an export wrote: JSON entries and summary lines.
#[derive(Default)]
struct Written {
    files: Map<String, Value>,
    lines: Vec<String>,
}

/// `pstl export --checkpoint ENC [--torchscript F] [--safetensors F] [--pt F] [--hub DIR]`.
pub fn run(a: ExportArgs, g: &GlobalOpts) -> Result<()> {
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    let device = setup_device(&cfg)?;
    check_args(&a)?;
    let mut w = Written::default();
    if a.torchscript.is_some() {
        torchscript(&a, &cfg, device, &mut w)?;
    }
    weights(&a, &cfg, &mut w)?;
    if a.hub.is_some() {
        hub(&a, &cfg, &mut w)?;
    }
    w.files.insert("command".into(), json!("export"));
    print_summary(g, &w.lines.join("\n"), Value::Object(w.files));
    Ok(())
}

/// At least one output, and a traced shape within bounds.
fn check_args(a: &ExportArgs) -> Result<()> {
    if a.torchscript.is_none() && a.safetensors.is_none() && a.pt.is_none() && a.hub.is_none() {
        bail!("export: give --torchscript OUT.pt, --safetensors OUT.safetensors, --pt OUT.pt and/or --hub DIR");
    }
    for (flag, v) in [("--frames", a.frames), ("--persons", a.persons)] {
        if !(1..=100_000).contains(&v) {
            bail!("{flag} {v}: must be in 1..=100000");
        }
    }
    Ok(())
}

/// `--torchscript`: the traced encoder (or encoder + classifier).
fn torchscript(a: &ExportArgs, cfg: &Config, device: Device, w: &mut Written) -> Result<()> {
    let Some(out) = &a.torchscript else {
        return Ok(());
    };
    let opts = crate::export::ExportOptions {
        frames: a.frames,
        persons: a.persons,
        stream: a.stream,
    };
    crate::export::export_torchscript(
        cfg,
        &a.checkpoint,
        a.classifier.as_deref(),
        out,
        &opts,
        device,
    )?;
    w.files.insert("torchscript".into(), json!(out));
    w.lines.push(format!(
        "export: TorchScript written to {} (input (N, 3, {}, {}, {}) on {}, batch size free)",
        out.display(),
        a.frames,
        cfg.layout().num_joints,
        a.persons,
        device_name(device)
    ));
    Ok(())
}

/// `--safetensors` and `--pt`: the weights with the official keys.
fn weights(a: &ExportArgs, cfg: &Config, w: &mut Written) -> Result<()> {
    let formats = [
        (&a.safetensors, WeightFormat::Safetensors, "safetensors"),
        (&a.pt, WeightFormat::TorchPt, "torch.save state_dict"),
    ];
    for (out, fmt, what) in formats {
        if let Some(out) = out {
            crate::export::export_weights(cfg, &a.checkpoint, a.classifier.as_deref(), out, fmt)?;
            w.files.insert(what.into(), json!(out));
            w.lines.push(format!(
                "export: official-key {what} written to {}",
                out.display()
            ));
        }
    }
    Ok(())
}

/// `--hub`: the hub directory (weights, config, model card).
fn hub(a: &ExportArgs, cfg: &Config, w: &mut Written) -> Result<()> {
    let Some(dir) = &a.hub else {
        return Ok(());
    };
    let opts = crate::export::hub::HubOptions {
        frames: a.frames,
        persons: a.persons,
        stream: a.stream,
        results: a.results.clone(),
    };
    crate::export::hub::export_hub(cfg, &a.checkpoint, a.classifier.as_deref(), dir, &opts)?;
    w.files.insert("hub".into(), json!(dir));
    w.lines.push(format!(
        "export: hub directory {} (model.safetensors, config.json, README.md)",
        dir.display()
    ));
    Ok(())
}
