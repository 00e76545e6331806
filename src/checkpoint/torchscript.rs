//! Tensor digests of TorchScript exports. The record `<top>/extra/pstl_digests.json`
//! (where `torch.jit.save(..., _extra_files=...)` puts extra files; `torch.jit.load`
//! ignores it unless asked) holds an xxh3-64 digest of each tensor record
//! (`constants/<k>`, `data/<k>`: one storage's bytes as stored) and, for a record whose
//! bytes are those of exactly one weight of the exported model, that weight's name.
//! Records rather than named parameters: a traced module holds its weights as unnamed
//! constants, and bytes as stored are recomputed without libtorch or an unpickler.

use super::digest::{self, Checked, IntegrityError};
use super::PT_DIGESTS;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

pub use crate::torchpt::is_torchscript;

/// What [`add_digests`] recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Tensor records digested.
    pub records: usize,
    /// Of those, the records named after a weight.
    pub named: usize,
    /// Bytes digested.
    pub bytes: usize,
}

/// Digest every tensor record of the TorchScript archive `path` (just saved, not yet in
/// place) and append the record `extra/pstl_digests.json`; `weights` are the exported
/// model's named tensors, for naming the records that hold them.
pub fn add_digests(path: &Path, weights: &[(String, Tensor)]) -> Result<Recorded> {
    let script = crate::torchpt::read_script(path, PT_DIGESTS)?;
    if script.extra.is_some() {
        anyhow::bail!("{}: already holds extra/{PT_DIGESTS}", path.display());
    }
    let mut by_digest: HashMap<String, Vec<&str>> = HashMap::new();
    for (name, t) in weights {
        let host = super::to_host(t)?;
        by_digest
            .entry(digest::digest(&host.data))
            .or_default()
            .push(name);
    }
    let mut tensors = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut bytes = 0;
    for (record, data) in &script.tensors {
        let d = digest::digest(data);
        if let Some([weight]) = by_digest.get(&d).map(Vec::as_slice) {
            names.insert(record.as_str(), *weight);
        }
        tensors.insert(record.as_str(), d);
        bytes += data.len();
    }
    let text =
        serde_json::json!({ "algo": digest::ALGO, "tensors": tensors, "names": names }).to_string();
    let name = format!("{}/extra/{PT_DIGESTS}", script.prefix);
    crate::torchpt::append_records(path, &[(name, text.as_bytes())])?;
    Ok(Recorded {
        records: tensors.len(),
        named: names.len(),
        bytes,
    })
}

/// Check the tensor records of the TorchScript archive `path` against its digest record,
/// if it has one. A mismatch names the record and, where recorded, the weight it holds.
pub fn verify(path: &Path) -> Result<Checked> {
    let script = crate::torchpt::read_script(path, PT_DIGESTS)?;
    let Some(record) = script.extra else {
        return Ok(Checked::NoDigest);
    };
    let text = String::from_utf8(record).map_err(|e| IntegrityError::BadRecord {
        file: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let names: BTreeMap<String, String> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v["names"].clone()).ok())
        .unwrap_or_default();
    let meta = BTreeMap::from([(digest::KEY.to_string(), text)]);
    let tensors = script
        .tensors
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()));
    digest::verify(path, &meta, tensors)
        .map_err(|e| match e {
            IntegrityError::Mismatch {
                file,
                tensor,
                recorded,
                computed,
                ..
            } => IntegrityError::Mismatch {
                what: names
                    .get(&tensor)
                    .map_or(String::new(), |w| format!(" (weight `{w}`)")),
                file,
                tensor,
                recorded,
                computed,
            },
            e => e,
        })
        .map_err(Into::into)
}
