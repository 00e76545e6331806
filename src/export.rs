//! Interop with Python teams: traced TorchScript modules (features or class logits,
//! with tensor digests as an extra file), safetensors with the official PyTorch
//! state_dict keys, and `pstl embed`.
//!
//! Tracing fixes the frame count `T`, the person count `M` and the device of the
//! example input; the batch dimension stays free. Export again with `--frames` /
//! `--persons` for other shapes.

use crate::config::Config;
use crate::eval::{features, load_encoder, load_with_classifier, ClassifierModel};
use crate::stream::Stream;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::Module, CModule, Device, Kind, Tensor};

pub mod hub;

/// Options of `pstl export`.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Frames of the traced input.
    pub frames: i64,
    /// Persons of the traced input.
    pub persons: i64,
    /// Stream the traced module expects raw joints for (motion/bone computed inside).
    pub stream: Stream,
}

/// Trace the encoder (and an optional classifier) into a TorchScript file.
pub fn export_torchscript(
    cfg: &Config,
    ckpt: &Path,
    classifier: Option<&Path>,
    out: &Path,
    opts: &ExportOptions,
    device: Device,
) -> Result<()> {
    let ClassifierModel {
        mut enc_vs,
        enc,
        mut fc_vs,
        fc,
    } = load_with_classifier(cfg, Some(ckpt), classifier, device)?;
    // Traced weights become constants of the module: they must not require grad.
    enc_vs.freeze();
    fc_vs.freeze();
    let layout = cfg.layout();
    let v = layout.num_joints as i64;
    let example = Tensor::randn([2, 3, opts.frames, v, opts.persons], (Kind::Float, device));
    let _guard = tch::no_grad_guard();
    let mut f = |inputs: &[Tensor]| {
        let x = opts.stream.apply(&inputs[0], &layout);
        let z = enc.forward_drop(&x, &[], false);
        vec![match &fc {
            Some(fc) => fc.forward(&z),
            None => z,
        }]
    };
    let module = CModule::create_by_tracing("PstlEncoder", "forward", &[example], &mut f)
        .context("tracing the encoder")?;
    let mut weights = crate::checkpoint::state_dict(&enc_vs, "", "", 0);
    weights.extend(crate::checkpoint::state_dict(&fc_vs, "fc.", "fc.", 0));
    crate::io::atomic_write_with(out, |tmp| {
        module
            .save(tmp)
            .with_context(|| format!("saving {}", tmp.display()))?;
        let start = std::time::Instant::now();
        let r = crate::checkpoint::torchscript::add_digests(tmp, &weights)?;
        tracing::debug!(
            "{}: {} tensor digests ({} records named after a weight, {:.1} MiB) in {:.1} ms",
            out.display(),
            r.records,
            r.named,
            r.bytes as f64 / (1 << 20) as f64,
            start.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    })
}

/// File formats of [`export_weights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// safetensors (`safetensors.torch.load_file`).
    Safetensors,
    /// A `torch.save` `OrderedDict` (`torch.load(path, weights_only=True)`).
    TorchPt,
}

/// Write the encoder with exactly the official keys; with a classifier, its `fc.*`
/// weights go to a second file `<stem>.classifier.<ext>`.
pub fn export_weights(
    cfg: &Config,
    ckpt: &Path,
    classifier: Option<&Path>,
    out: &Path,
    format: WeightFormat,
) -> Result<()> {
    let ex = load_with_classifier(cfg, Some(ckpt), classifier, Device::Cpu)?;
    let meta = |format: &str| {
        BTreeMap::from([
            ("format".to_string(), format.to_string()),
            ("config".to_string(), cfg.to_toml()),
        ])
    };
    let write = |path: &Path, tensors: &[(String, Tensor)], kind: &str| match format {
        WeightFormat::Safetensors => {
            crate::checkpoint::write_safetensors(path, tensors, &meta(kind))
        }
        WeightFormat::TorchPt => crate::checkpoint::write_torch_pt(path, tensors),
    };
    write(
        out,
        &crate::checkpoint::state_dict(&ex.enc_vs, "", "", 0),
        "pstl-encoder",
    )?;
    if ex.fc.is_some() {
        let ext = match format {
            WeightFormat::Safetensors => "classifier.safetensors",
            WeightFormat::TorchPt => "classifier.pt",
        };
        let fc_out = out.with_extension(ext);
        write(
            &fc_out,
            &crate::checkpoint::state_dict(&ex.fc_vs, "fc.", "fc.", 0),
            "pstl-classifier",
        )?;
        tracing::info!("classifier written to {}", fc_out.display());
    }
    Ok(())
}

/// Eval-mode features `(N, F)` for an `.npy` input `(N, 3, T, V, M)`; joints in `drop`
/// are removed as CSM does.
#[allow(clippy::too_many_arguments)]
pub fn embed(
    cfg: &Config,
    ckpt: &Path,
    input: &Path,
    output: &Path,
    stream: Stream,
    drop: &[usize],
    batch: usize,
    device: Device,
) -> Result<()> {
    let (data, shape) = crate::data::npy::read_npy_f32(input)
        .with_context(|| format!("reading {}", input.display()))?;
    let layout = cfg.layout();
    if shape.len() != 5 || shape[1] != 3 || shape[3] != layout.num_joints {
        bail!(
            "{}: expected shape (N, 3, T, {}, M), got {shape:?}",
            input.display(),
            layout.num_joints
        );
    }
    if shape[0] == 0 || shape[2] == 0 || shape[4] == 0 {
        bail!("{}: shape {shape:?} holds no sample", input.display());
    }
    let per_sample = data.len() / shape[0];
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: sample {} holds a non-finite value ({})",
            input.display(),
            k / per_sample,
            data[k]
        );
    }
    if let Some(&j) = drop.iter().find(|&&j| j >= layout.num_joints) {
        bail!(
            "--drop-joints: joint {j} does not exist (layout has {} joints)",
            layout.num_joints
        );
    }
    let mut distinct = drop.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() >= layout.num_joints {
        bail!(
            "--drop-joints: all {} joints removed; leave at least one",
            layout.num_joints
        );
    }
    if batch == 0 {
        bail!("--batch-size 0: must be at least 1");
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::from_slice(&data).view(dims.as_slice());
    let (_vs, enc) = load_encoder(cfg, Some(ckpt), device)?;
    let z = features(&enc, &x, stream, &layout, drop, batch, device)
        .to_device(Device::Cpu)
        .contiguous();
    crate::eval::check_finite(&z, "features")?;
    let out_shape: Vec<usize> = z.size().iter().map(|&d| d as usize).collect();
    let flat: Vec<f32> = Vec::try_from(z.flatten(0, -1))?;
    crate::data::npy::write_npy_f32(output, &flat, &out_shape)?;
    Ok(())
}
