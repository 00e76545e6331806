//! Checkpoints: fp32 safetensors whose keys are exactly the PyTorch state_dict keys of
//! the authors' model (`encoder.*`, `projector.projector.*`, `projector.bn.*`, with
//! `num_batches_tracked` written so `load_state_dict(strict=True)` works), plus the
//! optimiser's Adam moments (`optimizer.exp_avg.<var>`, `optimizer.exp_avg_sq.<var>`)
//! and run metadata (epoch, step, seed, config) in the safetensors header.
//!
//! Loading accepts our files, official `torch.save(encoder.state_dict())` `.pt` files
//! and safetensors with official keys, with or without a module prefix.
//!
//! Every safetensors file written here carries tensor digests ([`digest`]); every read
//! verifies them (a file without them loads, with a debug line). `.pt` exports and
//! TorchScript exports ([`torchscript`]) carry them as an extra archive record.

pub mod digest;
pub mod torchscript;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Format tag written in every pstl checkpoint's metadata.
pub const FORMAT: &str = "pstl-checkpoint";

/// A host copy of one tensor, ready for serialisation.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_host(t: &Tensor) -> Result<HostTensor> {
    let (kind, dtype, width) = match t.kind() {
        Kind::Int64 => (Kind::Int64, Dtype::I64, 8),
        Kind::Int => (Kind::Int, Dtype::I32, 4),
        _ => (Kind::Float, Dtype::F32, 4),
    };
    let t = t
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(kind)
        .contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * width];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(HostTensor {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Serialise named tensors and metadata to safetensors bytes (keys sorted).
pub fn to_safetensors_bytes(
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let host: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), to_host(t)?)))
        .collect::<Result<_>>()?;
    let mut meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.insert(
        digest::KEY.to_string(),
        digest::record(host.iter().map(|(k, h)| (k.as_str(), h.data.as_slice()))),
    );
    let meta = Some(meta);
    safetensors::serialize(host.iter().map(|(k, h)| (k.as_str(), h)), &meta)
        .map_err(|e| anyhow!("serialising safetensors: {e:?}"))
}

/// Write named tensors atomically as safetensors.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = to_safetensors_bytes(tensors, metadata)?;
    crate::io::atomic_write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Named CPU tensors.
pub type Tensors = BTreeMap<String, Tensor>;

/// Read a safetensors file: tensors (CPU) and metadata, its digests verified (a file
/// without digests loads, with a debug line).
pub fn read_safetensors(
    path: &Path,
) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let (tensors, meta, checked) = read_safetensors_checked(path)?;
    if checked == digest::Checked::NoDigest {
        tracing::debug!(
            "{}: no tensor digests (an official or an older pstl file): loaded unverified",
            path.display()
        );
    }
    Ok((tensors, meta))
}

/// [`read_safetensors`], also saying whether digests were verified. A digest mismatch
/// is an [`digest::IntegrityError`] (inside the `anyhow` error).
pub fn read_safetensors_checked(
    path: &Path,
) -> Result<(Tensors, BTreeMap<String, String>, digest::Checked)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: bad safetensors header: {e:?}", path.display()))?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let views = st.tensors();
    let checked = digest::verify(
        path,
        &meta,
        views.iter().map(|(n, v)| (n.as_str(), v.data())),
    )?;
    let mut out = BTreeMap::new();
    for (name, view) in views {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => bail!(
                "{}: tensor `{name}` has unsupported dtype {other:?}",
                path.display()
            ),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name, t);
    }
    Ok((out, meta, checked))
}

/// Read any supported weight file into named CPU tensors (metadata empty for `.pt`).
pub fn read_any(path: &Path) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    if !path.exists() {
        bail!("{}: no such checkpoint", path.display());
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("pt") | Some("pth") | Some("bin") | Some("tar") => {
            let state = crate::torchpt::read_state_dict(path)?;
            let meta = pt_digest_record(path)?;
            let checked = digest::verify(
                path,
                &meta,
                state.iter().map(|(n, t)| (n.as_str(), t.data.as_slice())),
            )?;
            if checked == digest::Checked::NoDigest {
                tracing::debug!(
                    "{}: no tensor digests (an official or an older pstl file): loaded unverified",
                    path.display()
                );
            }
            let mut out = BTreeMap::new();
            for (name, t) in state {
                out.insert(name, from_pt(&t, path)?);
            }
            Ok((out, meta))
        }
        _ => read_safetensors(path),
    }
}

/// Name of the digest record pstl adds to a `.pt` archive (`archive/<PT_DIGESTS>`).
pub const PT_DIGESTS: &str = "pstl_digests.json";

/// The digest record of a `.pt` archive written by pstl, as metadata ([`digest::KEY`]);
/// empty when there is none (an official file).
fn pt_digest_record(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let Ok(mut zip) = zip::ZipArchive::new(file) else {
        return Ok(BTreeMap::new());
    };
    let suffix = format!("/{PT_DIGESTS}");
    let Some(name) = zip
        .file_names()
        .find(|n| n.ends_with(&suffix))
        .map(String::from)
    else {
        return Ok(BTreeMap::new());
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut zip
            .by_name(&name)
            .with_context(|| format!("{}: record {name}", path.display()))?,
        &mut text,
    )
    .with_context(|| format!("{}: record {name}", path.display()))?;
    Ok(BTreeMap::from([(digest::KEY.to_string(), text)]))
}

fn from_pt(t: &crate::torchpt::PtTensor, path: &Path) -> Result<Tensor> {
    use crate::torchpt::PtDtype as D;
    let kind = match t.dtype {
        D::F32 => Kind::Float,
        D::F64 => Kind::Double,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::I64 => Kind::Int64,
        D::I32 => Kind::Int,
        D::I16 => Kind::Int16,
        D::I8 => Kind::Int8,
        D::U8 => Kind::Uint8,
        D::Bool => Kind::Bool,
    };
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(&t.data, &shape, kind)
        .with_context(|| format!("{}: bad tensor", path.display()))
}

/// Write named tensors as a `torch.save`-compatible state_dict (an `OrderedDict`).
pub fn write_torch_pt(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    use crate::torchpt::{PtDtype, PtTensor};
    let pt: Vec<(String, PtTensor)> = tensors
        .iter()
        .map(|(k, t)| {
            let h = to_host(t)?;
            let dtype = match h.dtype {
                Dtype::I64 => PtDtype::I64,
                Dtype::I32 => PtDtype::I32,
                _ => PtDtype::F32,
            };
            Ok((
                k.clone(),
                PtTensor {
                    dtype,
                    shape: h.shape,
                    data: h.data,
                },
            ))
        })
        .collect::<Result<_>>()?;
    let record = digest::record(pt.iter().map(|(k, t)| (k.as_str(), t.data.as_slice())));
    crate::torchpt::write_state_dict_extra(path, &pt, &[(PT_DIGESTS, record.as_bytes())])?;
    Ok(())
}

/// The official encoder state_dict from any supported file: the keys under the prefix
/// in front of `data_bn.weight` (`encoder.`, `encoder_q.`, `module.`, or none), with the
/// prefix removed.
pub fn encoder_state(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let (all, _) = read_any(path)?;
    let anchor = all
        .keys()
        .filter(|k| k.ends_with("data_bn.weight"))
        .min_by_key(|k| k.len())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "{}: no encoder weights (no `data_bn.weight` key)",
                path.display()
            )
        })?;
    let prefix = anchor.trim_end_matches("data_bn.weight").to_string();
    Ok(all
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_string(), v)))
        .collect())
}

/// Copy `state` into the variables of `vs` under `prefix` (e.g. `encoder.`), strictly:
/// every variable must be present with its shape, and every key of `state` (apart from
/// `num_batches_tracked`) must be used. Errors name the key and the file.
pub fn load_into(
    vs: &nn::VarStore,
    prefix: &str,
    state: &BTreeMap<String, Tensor>,
    file: &Path,
) -> Result<()> {
    let vars = vs.variables();
    let mut used = 0usize;
    let _guard = tch::no_grad_guard();
    for (name, var) in vars.iter() {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        let src = state
            .get(key)
            .ok_or_else(|| anyhow!("{}: missing key `{key}`", file.display()))?;
        if src.size() != var.size() {
            bail!(
                "{}: key `{key}` has shape {:?}, the model expects {:?}",
                file.display(),
                src.size(),
                var.size()
            );
        }
        var.shallow_clone()
            .copy_(&src.to_kind(var.kind()).to_device(var.device()));
        used += 1;
    }
    let expected: Vec<&String> = state
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if used != expected.len() {
        let unknown: Vec<&str> = expected
            .iter()
            .filter(|k| !vars.contains_key(&format!("{prefix}{k}")))
            .map(|k| k.as_str())
            .collect();
        bail!("{}: unexpected key(s) {unknown:?}", file.display());
    }
    Ok(())
}

/// Named tensors of `vs` under `prefix` (prefix removed and `out_prefix` put instead),
/// with a `num_batches_tracked` scalar added after every batch norm's `running_var`.
pub fn state_dict(
    vs: &nn::VarStore,
    prefix: &str,
    out_prefix: &str,
    batches: i64,
) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().filter(|k| k.starts_with(prefix)).collect();
    names.sort();
    for name in names {
        let key = &name[prefix.len()..];
        out.push((format!("{out_prefix}{key}"), vars[name].shallow_clone()));
        if let Some(stem) = key.strip_suffix("running_var") {
            out.push((
                format!("{out_prefix}{stem}num_batches_tracked"),
                Tensor::from(batches),
            ));
        }
    }
    out
}
