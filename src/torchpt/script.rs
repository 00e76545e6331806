//! TorchScript archives (`torch.jit.save`, libtorch's `Module::save`), read as records
//! only, nothing unpickled: they are recognised by their `code/` folder and
//! `constants.pkl`; their tensor records (`constants/<k>` for the constants a traced
//! module holds its weights in, `data/<k>` for parameters and buffers) are the raw
//! bytes of each storage; `extra/<name>` records are what
//! `torch.jit.load(path, _extra_files={name: ""})` returns.

use super::read::Archive;
use super::PtError;
use std::path::Path;

/// What [`read_script`] returns.
#[derive(Debug)]
pub struct Script {
    /// The archive's top folder (libtorch names it after the file it saved to).
    pub prefix: String,
    /// `(name, bytes)` of every tensor record, names relative to the top folder, sorted.
    pub tensors: Vec<(String, Vec<u8>)>,
    /// The bytes of the extra record asked for, if the archive has it.
    pub extra: Option<Vec<u8>>,
}

/// Whether `path` is a zip archive holding a TorchScript module.
pub fn is_torchscript(path: &Path) -> bool {
    Archive::open(path).is_ok_and(|a| {
        a.names()
            .iter()
            .any(|n| n == "constants.pkl" || n.starts_with("code/"))
    })
}

/// The tensor records of the TorchScript archive `path` and its record
/// `extra/<extra>`. Reading checks each record's zip CRC-32.
pub fn read_script(path: &Path, extra: &str) -> Result<Script, PtError> {
    let mut archive = Archive::open(path)?;
    let names = archive.names();
    if !names
        .iter()
        .any(|n| n == "constants.pkl" || n.starts_with("code/"))
    {
        return Err(PtError::Format {
            path: path.to_path_buf(),
            detail: "no `code/` or `constants.pkl` record: not a TorchScript archive".into(),
        });
    }
    let mut tensors = Vec::new();
    for name in names.iter().filter(|n| is_tensor_record(n)) {
        let full = format!("{}/{name}", archive.prefix);
        // Listed above, so present.
        if let Some(bytes) = archive.record(&full)? {
            tensors.push((name.clone(), bytes));
        }
    }
    let extra = archive.record(&format!("{}/extra/{extra}", archive.prefix))?;
    Ok(Script {
        prefix: archive.prefix,
        tensors,
        extra,
    })
}

/// `constants/<k>` or `data/<k>`: one storage's bytes.
fn is_tensor_record(name: &str) -> bool {
    let key = name
        .strip_prefix("constants/")
        .or_else(|| name.strip_prefix("data/"));
    key.is_some_and(|k| !k.is_empty() && !k.contains('/'))
}
