//! Tensor digests: every safetensors file pstl writes carries, in its metadata under
//! [`KEY`], an xxh3-64 digest of each tensor's bytes (computed from the host copy being
//! serialised); every read recomputes them and names the first tensor that differs.
//! xxh3 rather than SHA-256: see docs/performance.md ("Checkpoint digests").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata key of the digests (a JSON object `{"algo": ALGO, "tensors": {name: hex}}`).
pub const KEY: &str = "pstl_digests";
/// The digest algorithm.
pub const ALGO: &str = "xxh3-64";

/// A file whose tensor data does not match its recorded digests.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// A tensor's bytes hash to another value than the one recorded.
    #[error(
        "{file}: tensor `{tensor}`{what} does not match its recorded {ALGO} digest \
         (recorded {recorded}, computed {computed}): the file is corrupt"
    )]
    Mismatch {
        /// The file.
        file: PathBuf,
        /// The first tensor (in name order) that differs.
        tensor: String,
        /// Said after the name: empty, or what the tensor holds (` (weight \`x\`)`).
        what: String,
        /// Digest in the metadata.
        recorded: String,
        /// Digest of the bytes read.
        computed: String,
    },
    /// A tensor with a digest is absent, or a tensor has none.
    #[error("{file}: tensor `{tensor}` {why}: the file is corrupt")]
    Unlisted {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The digest record itself cannot be read.
    #[error("{file}: metadata `{KEY}` is unreadable ({why}): the file is corrupt")]
    BadRecord {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The digest of one tensor's bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// The metadata value for `tensors` (name, bytes).
pub fn record<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let map: BTreeMap<&str, String> = tensors.map(|(k, b)| (k, digest(b))).collect();
    serde_json::json!({ "algo": ALGO, "tensors": map }).to_string()
}

/// What [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every tensor matched its digest.
    Verified(usize),
    /// The file has no digests (an official or an older pstl file).
    NoDigest,
}

/// Check `tensors` (name, bytes) of `file` against the record in `meta`, if any.
pub fn verify<'a>(
    file: &Path,
    meta: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<Checked, IntegrityError> {
    let Some(text) = meta.get(KEY) else {
        return Ok(Checked::NoDigest);
    };
    let bad = |why: String| IntegrityError::BadRecord {
        file: file.to_path_buf(),
        why,
    };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if v["algo"].as_str() != Some(ALGO) {
        return Err(bad(format!("algorithm {} is not {ALGO}", v["algo"])));
    }
    let recorded = v["tensors"]
        .as_object()
        .ok_or_else(|| bad("no `tensors` object".into()))?;
    let mut got: Vec<(&str, &[u8])> = tensors.collect();
    got.sort_by(|a, b| a.0.cmp(b.0));
    for (name, bytes) in &got {
        let Some(want) = recorded.get(*name).and_then(|d| d.as_str()) else {
            return Err(IntegrityError::Unlisted {
                file: file.to_path_buf(),
                tensor: name.to_string(),
                why: "has no recorded digest",
            });
        };
        let computed = digest(bytes);
        if computed != want {
            return Err(IntegrityError::Mismatch {
                file: file.to_path_buf(),
                tensor: name.to_string(),
                what: String::new(),
                recorded: want.to_string(),
                computed,
            });
        }
    }
    if let Some(missing) = recorded
        .keys()
        .find(|k| got.binary_search_by(|g| g.0.cmp(k.as_str())).is_err())
    {
        return Err(IntegrityError::Unlisted {
            file: file.to_path_buf(),
            tensor: missing.clone(),
            why: "has a recorded digest but is not in the file",
        });
    }
    Ok(Checked::Verified(got.len()))
}
