//! Reading of `torch.save` zip archives: the archive is opened and checked, `data.pkl`
//! is unpickled into tensor views of storages, and each view is gathered from its
//! storage record into a contiguous buffer.

use super::objects::{TensorRef, TorchObj, TorchObjects, Value};
use super::{PtError, PtTensor};
use crate::pickle;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Reads a `torch.save` zip archive holding a `dict` / `collections.OrderedDict` of
/// tensors (a state_dict). Returns the entries in file order.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, PtTensor)>, PtError> {
    let mut archive = Archive::open(path)?;
    archive.check_byteorder()?;
    let views = archive.tensor_views()?;
    archive.gather_tensors(views)
}

/// An open `torch.save` (or TorchScript) archive: the zip and its top folder.
pub(super) struct Archive<'p> {
    path: &'p Path,
    zip: zip::ZipArchive<BufReader<File>>,
    /// The archive's top folder (the first record's), e.g. `archive`.
    pub(super) prefix: String,
}

impl<'p> Archive<'p> {
    /// Opens `path`, checks that it is a zip archive and finds its top folder.
    pub(super) fn open(path: &'p Path) -> Result<Self, PtError> {
        let mut file = File::open(path).map_err(|source| PtError::Io {
            path: path.to_path_buf(),
            what: "cannot open",
            source,
        })?;
        check_magic(&mut file, path)?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| zip_err(path, format!("not a readable zip archive: {e}")))?;
        let prefix = top_folder(&mut zip, path)?;
        Ok(Archive { path, zip, prefix })
    }

    fn format_err(&self, detail: String) -> PtError {
        format_err(self.path, detail)
    }

    /// Rejects a big-endian or unknown `byteorder` record (its absence means little).
    fn check_byteorder(&mut self) -> Result<(), PtError> {
        let prefix = &self.prefix;
        let Some(order) = self.record(&format!("{prefix}/byteorder"))? else {
            return Ok(());
        };
        let prefix = &self.prefix;
        match order.as_slice() {
            b"little" => Ok(()),
            b"big" => Err(self.format_err(format!(
                "'{prefix}/byteorder' is 'big': big-endian archives are not supported"
            ))),
            other => Err(self.format_err(format!(
                "'{prefix}/byteorder' holds unknown byte order {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// Unpickles `data.pkl`: the state_dict's entries as named views of storages.
    fn tensor_views(&mut self) -> Result<Vec<(String, Box<TensorRef>)>, PtError> {
        let pkl_name = format!("{}/data.pkl", self.prefix);
        let pkl = self.record(&pkl_name)?.ok_or_else(|| {
            self.format_err(format!("no '{pkl_name}' record: not a torch.save archive"))
        })?;
        let root = pickle::unpickle(&pkl, &mut TorchObjects).map_err(|(offset, detail)| {
            PtError::Pickle {
                path: self.path.to_path_buf(),
                record: pkl_name.clone(),
                offset,
                detail,
            }
        })?;
        let entries = match root {
            Value::Dict(items, _) => items,
            other => {
                return Err(self.format_err(format!(
                    "'{pkl_name}' holds {}, expected a state_dict (a dict or OrderedDict of \
                     tensors)",
                    other.describe()
                )))
            }
        };
        entries
            .into_iter()
            .map(|(key, value)| tensor_entry(key, value).map_err(|d| self.format_err(d)))
            .collect()
    }

    /// Gathers every view from its storage record, in order. Storages are read once,
    /// kept while later tensors still view them, and handed over without a copy to their
    /// last tensor when that one covers them contiguously.
    fn gather_tensors(
        &mut self,
        views: Vec<(String, Box<TensorRef>)>,
    ) -> Result<Vec<(String, PtTensor)>, PtError> {
        let mut storages = Storages::new(&views);
        let mut out = Vec::with_capacity(views.len());
        for (name, t) in views {
            let record = format!("{}/data/{}", self.prefix, t.storage.key);
            if !storages.contains(&t.storage.key) {
                let bytes = self.storage(&record, &t, &name)?;
                storages.insert(&t.storage.key, bytes);
            }
            let data = storages.gather(&t).map_err(|d| {
                self.format_err(format!("tensor '{name}' (storage '{record}'): {d}"))
            })?;
            let TensorRef { dtype, size, .. } = *t;
            out.push((
                name,
                PtTensor {
                    dtype,
                    shape: size,
                    data,
                },
            ));
        }
        Ok(out)
    }

    /// The bytes of storage `record` that tensor `name` views, checked against the
    /// size data.pkl declares.
    fn storage(&mut self, record: &str, t: &TensorRef, name: &str) -> Result<Vec<u8>, PtError> {
        let bytes = self.record(record)?.ok_or_else(|| {
            self.format_err(format!(
                "missing storage '{record}' (needed by tensor '{name}')"
            ))
        })?;
        let declared = t
            .storage
            .numel
            .saturating_mul(t.storage.dtype.size() as u64);
        if (bytes.len() as u64) < declared {
            return Err(self.format_err(format!(
                "storage '{record}' holds {} bytes but data.pkl declares {} elements of {} \
                 ({declared} bytes)",
                bytes.len(),
                t.storage.numel,
                t.storage.dtype
            )));
        }
        Ok(bytes)
    }

    /// The names of the records under the top folder, relative to it, sorted.
    pub(super) fn names(&self) -> Vec<String> {
        let top = format!("{}/", self.prefix);
        let mut names: Vec<String> = self
            .zip
            .file_names()
            .filter_map(|n| n.strip_prefix(&top))
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    /// The bytes of zip record `name`, `None` when the archive has no such record.
    pub(super) fn record(&mut self, name: &str) -> Result<Option<Vec<u8>>, PtError> {
        let path = self.path;
        let mut entry = match self.zip.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(zip_err(path, format!("cannot open record '{name}': {e}"))),
        };
        let size = usize::try_from(entry.size())
            .map_err(|_| zip_err(path, format!("record '{name}' is too large")))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|_| {
            zip_err(
                path,
                format!("record '{name}' ({size} bytes) does not fit in memory"),
            )
        })?;
        entry
            .read_to_end(&mut buf)
            .map_err(|e| zip_err(path, format!("cannot read record '{name}': {e}")))?;
        Ok(Some(buf))
    }
}

fn zip_err(path: &Path, detail: String) -> PtError {
    PtError::Zip {
        path: path.to_path_buf(),
        detail,
    }
}

fn format_err(path: &Path, detail: String) -> PtError {
    PtError::Format {
        path: path.to_path_buf(),
        detail,
    }
}

/// Checks the zip signature, naming the legacy bare-pickle format when it finds one.
fn check_magic(file: &mut File, path: &Path) -> Result<(), PtError> {
    let mut magic = [0u8; 4];
    let got = read_up_to(file, &mut magic).map_err(|source| PtError::Io {
        path: path.to_path_buf(),
        what: "cannot read",
        source,
    })?;
    if got < 4 || &magic != b"PK\x03\x04" {
        let detail = if got >= 1 && magic[0] == 0x80 {
            "a bare pickle, not a zip archive (legacy pre-1.6 torch.save format, or \
             `_use_new_zipfile_serialization=False`); re-save it with a current PyTorch"
        } else {
            "not a zip archive (expected a PyTorch >= 1.6 torch.save file)"
        };
        return Err(zip_err(path, detail.to_string()));
    }
    Ok(())
}

/// Like torch's reader: the archive's top folder is the first record's.
fn top_folder<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
) -> Result<String, PtError> {
    let first = zip
        .by_index(0)
        .map_err(|e| zip_err(path, format!("cannot read the first zip record: {e}")))?
        .name()
        .to_string();
    match first.split_once('/') {
        Some((p, _)) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(format_err(
            path,
            format!("zip record '{first}' is not inside a top folder: not a torch.save archive"),
        )),
    }
}

/// One state_dict entry: a string key and a tensor.
fn tensor_entry(key: Value, value: Value) -> Result<(String, Box<TensorRef>), String> {
    let name = match key {
        Value::Str(s) => s,
        other => {
            return Err(format!(
                "state_dict key {} is not a string",
                other.describe()
            ))
        }
    };
    match value {
        Value::Obj(TorchObj::Tensor(t)) => Ok((name, t)),
        other => Err(format!(
            "state_dict entry '{name}' is {}, not a tensor",
            other.describe()
        )),
    }
}

/// Storage bytes read so far, and how many of the remaining views use each storage.
struct Storages {
    uses: HashMap<String, usize>,
    bytes: HashMap<String, Vec<u8>>,
}

impl Storages {
    /// Counts the views of each storage.
    fn new(views: &[(String, Box<TensorRef>)]) -> Self {
        let mut uses: HashMap<String, usize> = HashMap::new();
        for (_, t) in views {
            *uses.entry(t.storage.key.clone()).or_default() += 1;
        }
        Storages {
            uses,
            bytes: HashMap::new(),
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.bytes.contains_key(key)
    }

    fn insert(&mut self, key: &str, bytes: Vec<u8>) {
        self.bytes.insert(key.to_string(), bytes);
    }

    /// The contiguous data of view `t` (its storage must have been inserted); the
    /// storage is dropped, or handed over, at its last view.
    fn gather(&mut self, t: &TensorRef) -> Result<Vec<u8>, String> {
        let key = &t.storage.key;
        let last_use = match self.uses.get_mut(key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => true,
        };
        if last_use {
            let bytes = self.bytes.remove(key).unwrap_or_default();
            gather_owned(t, bytes)
        } else {
            let bytes = self.bytes.get(key).map(Vec::as_slice).unwrap_or_default();
            gather(t, bytes)
        }
    }
}

/// Reads as many bytes as are available into `buf` (stops early only at end of file).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether the view's strides are C-contiguous (size-1 dims may have any stride).
fn is_contiguous(t: &TensorRef) -> bool {
    let mut expect = 1usize;
    for (&n, &s) in t.size.iter().zip(&t.stride).rev() {
        if n != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(n);
    }
    true
}

/// [`gather`] for the last view of a storage: a contiguous view starting at the
/// storage's beginning takes over its buffer instead of copying it.
fn gather_owned(t: &TensorRef, mut storage: Vec<u8>) -> Result<Vec<u8>, String> {
    let bytes = t
        .size
        .iter()
        .try_fold(t.dtype.size(), |n, &d| n.checked_mul(d));
    match bytes {
        Some(n) if t.offset == 0 && n <= storage.len() && is_contiguous(t) => {
            storage.truncate(n);
            Ok(storage)
        }
        _ => gather(t, &storage),
    }
}

/// Copies the (possibly strided, offset) view `t` of `storage` into a contiguous buffer.
fn gather(t: &TensorRef, storage: &[u8]) -> Result<Vec<u8>, String> {
    let elem = t.dtype.size();
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("element count overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    check_extent(t, storage.len())?;
    let total = numel.checked_mul(elem).ok_or("byte count overflows")?;
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| format!("{total} bytes do not fit in memory"))?;
    if is_contiguous(t) {
        out.extend_from_slice(elements(storage, elem, t.offset, numel)?);
    } else {
        copy_strided(t, storage, numel, &mut out)?;
    }
    Ok(out)
}

/// Checks that the last element the view addresses lies inside the storage.
fn check_extent(t: &TensorRef, storage_len: usize) -> Result<(), String> {
    let mut last = t.offset;
    for (&n, &s) in t.size.iter().zip(&t.stride) {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or("view extent overflows")?;
    }
    let end = last
        .checked_add(1)
        .and_then(|x| x.checked_mul(t.dtype.size()))
        .ok_or("view extent overflows")?;
    if end > storage_len {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) needs {end} bytes but the storage holds \
             {storage_len}",
            t.offset, t.size, t.stride
        ));
    }
    Ok(())
}

/// The bytes of `len` elements of `elem` bytes from element `from` of `storage`.
fn elements(storage: &[u8], elem: usize, from: usize, len: usize) -> Result<&[u8], String> {
    from.checked_mul(elem)
        .and_then(|a| Some((a, a.checked_add(len.checked_mul(elem)?)?)))
        .and_then(|(a, b)| storage.get(a..b))
        .ok_or_else(|| "view outside its storage".to_string())
}

/// Appends the `numel` elements of a non-contiguous view to `out`: walks the outer
/// dims and copies the innermost dim (a run when its stride is 1).
fn copy_strided(
    t: &TensorRef,
    storage: &[u8],
    numel: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let elem = t.dtype.size();
    let nd = t.size.len(); // >= 1 here: a 0-d view is always contiguous
    let inner = t.size[nd - 1];
    let inner_stride = t.stride[nd - 1];
    let mut idx = vec![0usize; nd - 1];
    for _ in 0..numel / inner {
        let base = idx
            .iter()
            .zip(&t.stride)
            .fold(t.offset, |b, (&i, &s)| b + i * s);
        if inner_stride == 1 {
            out.extend_from_slice(elements(storage, elem, base, inner)?);
        } else {
            for j in 0..inner {
                out.extend_from_slice(elements(storage, elem, base + j * inner_stride, 1)?);
            }
        }
        for d in (0..nd - 1).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(())
}
