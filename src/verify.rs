//! `pstl verify`: offline checks of stores, checkpoints and exports, one line per file.
//! A store is opened and validated (attributes, shapes, labels) and every sample read
//! back (HDF5's Fletcher-32 checksums, where the store has them) and checked finite. A
//! weight file's tensor digests are recomputed, its tensors checked finite, and, when
//! it carries its config (pstl checkpoints and encoders), its keys and shapes loaded
//! strictly into the model that config describes. A TorchScript export's record
//! digests are recomputed and the module loaded by libtorch.

use crate::checkpoint::digest::Checked;
use crate::config::Config;
use crate::data::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// HDF5's file signature.
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// Check one file; `Ok` holds what was checked (for the `OK` line).
pub fn verify_file(path: &Path) -> Result<String> {
    if !path.is_file() {
        bail!("no such file");
    }
    let mut magic = [0u8; 8];
    let n = std::io::Read::read(&mut std::fs::File::open(path)?, &mut magic)?;
    if n == 8 && magic == HDF5_MAGIC {
        return verify_store(path);
    }
    if crate::checkpoint::torchscript::is_torchscript(path) {
        return verify_torchscript(path);
    }
    verify_weights(path)
}

/// A TorchScript module: its tensor records' digests, then a load by libtorch on CPU
/// (its code compiles, its constants deserialise).
fn verify_torchscript(path: &Path) -> Result<String> {
    let digests = match crate::checkpoint::torchscript::verify(path)? {
        Checked::Verified(n) => format!("{n} tensor digests verified"),
        Checked::NoDigest => "no digests (not written by pstl, or by an older pstl)".into(),
    };
    tch::CModule::load_on_device(path, Device::Cpu)
        .with_context(|| format!("{}: libtorch cannot load it", path.display()))?;
    Ok(format!(
        "TorchScript module, {digests}, loads in libtorch on CPU"
    ))
}

/// A store: every sample of every split read back and checked finite.
fn verify_store(path: &Path) -> Result<String> {
    let store = Store::open(path)?;
    let mut parts = Vec::new();
    for split in ["train", "test"] {
        let n = store.len(split)?;
        store.check_finite(split)?;
        parts.push(format!("{split} {n}"));
    }
    let m = store.meta();
    Ok(format!(
        "store {} {} ({}), {} samples of {} frames, every value read and finite",
        m.dataset,
        m.benchmark,
        parts.join(", "),
        store.len("train")? + store.len("test")?,
        m.frames
    ))
}

/// A checkpoint or an export: digests, finiteness, and shapes against its config.
fn verify_weights(path: &Path) -> Result<String> {
    let (tensors, meta, checked) = match path.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth" | "bin" | "tar") => {
            let (t, m) = crate::checkpoint::read_any(path)?;
            let c = match m.is_empty() {
                true => Checked::NoDigest,
                false => Checked::Verified(t.len()),
            };
            (t, m, c)
        }
        _ => crate::checkpoint::read_safetensors_checked(path)?,
    };
    check_finite(path, &tensors)?;
    let format = meta.get("format").map(String::as_str).unwrap_or("");
    let shapes = match (format, meta.get("config")) {
        (crate::checkpoint::FORMAT, Some(cfg)) => {
            let cfg = stored_config(path, cfg)?;
            let mut t = crate::train::Trainer::new(&cfg, Device::Cpu);
            t.resume(path)?;
            format!("pstl checkpoint at epoch {} (step {}), ", t.epoch, t.step)
        }
        ("pstl-encoder", Some(cfg)) => {
            let cfg = stored_config(path, cfg)?;
            crate::eval::load_encoder(&cfg, Some(path), Device::Cpu)?;
            "pstl encoder, ".to_string()
        }
        _ => String::new(),
    };
    let shapes = match shapes.is_empty() {
        true => "no stored config: shapes not checked".to_string(),
        false => format!("{shapes}keys and shapes match its stored config"),
    };
    let digests = match checked {
        Checked::Verified(n) => format!("{n} tensor digests verified"),
        Checked::NoDigest => format!(
            "{} tensors, no digests (an official or an older file)",
            tensors.len()
        ),
    };
    Ok(format!("{digests}, all finite, {shapes}"))
}

fn stored_config(path: &Path, text: &str) -> Result<Config> {
    toml::from_str(text).with_context(|| format!("{}: stored config", path.display()))
}

/// The first tensor holding a non-finite value, named.
fn check_finite(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, t) in tensors {
        if !t.is_floating_point() {
            continue;
        }
        let t = t.to_kind(Kind::Float).flatten(0, -1);
        let bad = t.isfinite().logical_not();
        if bad.any().int64_value(&[]) != 0 {
            let i = bad.nonzero().int64_value(&[0, 0]);
            return Err(anyhow!(
                "{}: tensor `{name}` holds a non-finite value ({}) at element {i}",
                path.display(),
                t.double_value(&[i])
            ));
        }
    }
    Ok(())
}
