//! Pure-Rust reading and writing of PyTorch `torch.save(state_dict)` files.
//!
//! Since PyTorch 1.6, `torch.save` writes a zip archive: `<prefix>/data.pkl` (a pickle
//! whose tensors are `torch._utils._rebuild_tensor_v2(...)` calls referring to storages
//! by *persistent id*), one raw little-endian record `<prefix>/data/<key>` per storage,
//! plus `<prefix>/byteorder` and `<prefix>/version`. libtorch's C++ `pickle_load` (what
//! tch's `Tensor::loadz_multi` uses) cannot read the `collections.OrderedDict` that
//! `torch.save(model.state_dict())` produces ("Expected GenericDict but got None"), and
//! that is exactly how the PSTL authors' checkpoints are saved. This module therefore
//! reads and writes such files without libtorch:
//!
//! * [`read_state_dict`] opens the zip (crate `zip`), runs pstl's one pickle virtual
//!   machine ([`crate::pickle`]) with the meaning of torch's storages and
//!   `_rebuild_tensor*` calls, and accepts only a (possibly ordered) `dict` of tensors: any other
//!   callable — e.g. a pickled `nn.Module` — is rejected, so nothing is ever executed.
//!   Strided views and storage offsets are gathered into contiguous buffers; tensors that
//!   share a storage each get their own copy.
//! * [`write_state_dict`] writes the zip with the `zip` crate (stored entries, every record 64-byte
//!   aligned like torch's own writer) holding an `OrderedDict` of `_rebuild_tensor_v2`
//!   calls, which `torch.load(path, weights_only=True)` accepts. The file appears
//!   atomically ([`crate::io::temp_beside`], then persist).
//!
//! Tensor data is always contiguous, C order, little-endian ([`PtTensor`]).

use crate::pickle::{self, Describe, Objects, VmResult};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Element type of a tensor (the dtypes a state_dict of this project can hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PtDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl PtDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            PtDtype::F64 | PtDtype::I64 => 8,
            PtDtype::F32 | PtDtype::I32 => 4,
            PtDtype::F16 | PtDtype::BF16 | PtDtype::I16 => 2,
            PtDtype::I8 | PtDtype::U8 | PtDtype::Bool => 1,
        }
    }

    /// The legacy typed-storage class torch pickles for this dtype (`torch.<name>`).
    fn storage_name(self) -> &'static str {
        match self {
            PtDtype::F32 => "FloatStorage",
            PtDtype::F64 => "DoubleStorage",
            PtDtype::F16 => "HalfStorage",
            PtDtype::BF16 => "BFloat16Storage",
            PtDtype::I64 => "LongStorage",
            PtDtype::I32 => "IntStorage",
            PtDtype::I16 => "ShortStorage",
            PtDtype::I8 => "CharStorage",
            PtDtype::U8 => "ByteStorage",
            PtDtype::Bool => "BoolStorage",
        }
    }

    fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => PtDtype::F32,
            "DoubleStorage" => PtDtype::F64,
            "HalfStorage" => PtDtype::F16,
            "BFloat16Storage" => PtDtype::BF16,
            "LongStorage" => PtDtype::I64,
            "IntStorage" => PtDtype::I32,
            "ShortStorage" => PtDtype::I16,
            "CharStorage" => PtDtype::I8,
            "ByteStorage" | "UntypedStorage" | "_UntypedStorage" => PtDtype::U8,
            "BoolStorage" => PtDtype::Bool,
            _ => return None,
        })
    }

    /// A `torch.<name>` dtype global (as pickled for `_rebuild_tensor_v3`).
    fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" | "float" => PtDtype::F32,
            "float64" | "double" => PtDtype::F64,
            "float16" | "half" => PtDtype::F16,
            "bfloat16" => PtDtype::BF16,
            "int64" | "long" => PtDtype::I64,
            "int32" | "int" => PtDtype::I32,
            "int16" | "short" => PtDtype::I16,
            "int8" => PtDtype::I8,
            "uint8" => PtDtype::U8,
            "bool" => PtDtype::Bool,
            _ => return None,
        })
    }

    fn torch_name(self) -> &'static str {
        match self {
            PtDtype::F32 => "float32",
            PtDtype::F64 => "float64",
            PtDtype::F16 => "float16",
            PtDtype::BF16 => "bfloat16",
            PtDtype::I64 => "int64",
            PtDtype::I32 => "int32",
            PtDtype::I16 => "int16",
            PtDtype::I8 => "int8",
            PtDtype::U8 => "uint8",
            PtDtype::Bool => "bool",
        }
    }
}

impl fmt::Display for PtDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "torch.{}", self.torch_name())
    }
}

/// A dense tensor: `data` is contiguous, C order, little-endian, exactly
/// `numel * dtype.size()` bytes (`numel` = product of `shape`, 1 for a 0-d tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct PtTensor {
    pub dtype: PtDtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl PtTensor {
    /// Number of elements (`None` on overflow).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// Errors of [`read_state_dict`] / [`write_state_dict`]; each names the file.
#[derive(thiserror::Error, Debug)]
pub enum PtError {
    /// An operating-system error while reading or writing the file.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The file is not a (readable) zip archive, or a record could not be extracted.
    #[error("{}: {detail}", path.display())]
    Zip { path: PathBuf, detail: String },
    /// `data.pkl` holds something this reader does not understand or accept.
    #[error("{}: {record} byte {offset}: {detail}", path.display())]
    Pickle {
        path: PathBuf,
        record: String,
        offset: usize,
        detail: String,
    },
    /// The archive is structurally wrong (missing record, tensor out of its storage, ...).
    #[error("{}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    /// [`write_state_dict`] was given tensors it cannot write.
    #[error("cannot write {}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
}

// ---------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------

/// Reads a `torch.save` zip archive holding a `dict` / `collections.OrderedDict` of
/// tensors (a state_dict). Returns the entries in file order.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, PtTensor)>, PtError> {
    let zip_err = |detail: String| PtError::Zip {
        path: path.to_path_buf(),
        detail,
    };
    let format_err = |detail: String| PtError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(|source| PtError::Io {
        path: path.to_path_buf(),
        what: "cannot open",
        source,
    })?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(|source| PtError::Io {
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
        return Err(zip_err(detail.to_string()));
    }
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| zip_err(format!("not a readable zip archive: {e}")))?;

    // Like torch's reader: the archive's top folder is the first record's.
    let first = archive
        .by_index(0)
        .map_err(|e| zip_err(format!("cannot read the first zip record: {e}")))?
        .name()
        .to_string();
    let prefix = match first.split_once('/') {
        Some((p, _)) if !p.is_empty() => p.to_string(),
        _ => {
            return Err(format_err(format!(
                "zip record '{first}' is not inside a top folder: not a torch.save archive"
            )))
        }
    };

    if let Some(order) = read_record_opt(&mut archive, &format!("{prefix}/byteorder"), path)? {
        match order.as_slice() {
            b"little" => {}
            b"big" => {
                return Err(format_err(format!(
                    "'{prefix}/byteorder' is 'big': big-endian archives are not supported"
                )))
            }
            other => {
                return Err(format_err(format!(
                    "'{prefix}/byteorder' holds unknown byte order {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        }
    }

    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = read_record_opt(&mut archive, &pkl_name, path)?
        .ok_or_else(|| format_err(format!("no '{pkl_name}' record: not a torch.save archive")))?;

    let root =
        pickle::unpickle(&pkl, &mut TorchObjects).map_err(|(offset, detail)| PtError::Pickle {
            path: path.to_path_buf(),
            record: pkl_name.clone(),
            offset,
            detail,
        })?;

    let entries = match root {
        Value::Dict(items, _) => items,
        other => {
            return Err(format_err(format!(
                "'{pkl_name}' holds {}, expected a state_dict (a dict or OrderedDict of tensors)",
                other.describe()
            )))
        }
    };

    let mut tensors = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let name = match key {
            Value::Str(s) => s,
            other => {
                return Err(format_err(format!(
                    "state_dict key {} is not a string",
                    other.describe()
                )))
            }
        };
        match value {
            Value::Obj(TorchObj::Tensor(t)) => tensors.push((name, t)),
            other => {
                return Err(format_err(format!(
                    "state_dict entry '{name}' is {}, not a tensor",
                    other.describe()
                )))
            }
        }
    }

    // Storages are read once, kept while later tensors still view them, and handed over
    // without a copy to their last tensor when that one covers them contiguously.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (_, t) in &tensors {
        *uses.entry(t.storage.key.clone()).or_default() += 1;
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let key = &t.storage.key;
        let record = format!("{prefix}/data/{key}");
        if !storages.contains_key(key) {
            let bytes = read_record_opt(&mut archive, &record, path)?.ok_or_else(|| {
                format_err(format!(
                    "missing storage '{record}' (needed by tensor '{name}')"
                ))
            })?;
            let declared = t
                .storage
                .numel
                .saturating_mul(t.storage.dtype.size() as u64);
            if (bytes.len() as u64) < declared {
                return Err(format_err(format!(
                    "storage '{record}' holds {} bytes but data.pkl declares {} elements of {} \
                     ({declared} bytes)",
                    bytes.len(),
                    t.storage.numel,
                    t.storage.dtype
                )));
            }
            storages.insert(key.clone(), bytes);
        }
        let last_use = match uses.get_mut(key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => true,
        };
        let gathered = if last_use {
            let bytes = storages.remove(key).unwrap_or_default();
            gather_owned(&t, bytes)
        } else {
            let bytes = storages.get(key).map(Vec::as_slice).unwrap_or_default();
            gather(&t, bytes)
        };
        let data = gathered
            .map_err(|d| format_err(format!("tensor '{name}' (storage '{record}'): {d}")))?;
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

/// The bytes of zip record `name`, `None` when the archive has no such record.
fn read_record_opt<R: Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    path: &Path,
) -> Result<Option<Vec<u8>>, PtError> {
    let zip_err = |detail: String| PtError::Zip {
        path: path.to_path_buf(),
        detail,
    };
    let mut entry = match archive.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_err(format!("cannot open record '{name}': {e}"))),
    };
    let size = usize::try_from(entry.size())
        .map_err(|_| zip_err(format!("record '{name}' is too large")))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(size).map_err(|_| {
        zip_err(format!(
            "record '{name}' ({size} bytes) does not fit in memory"
        ))
    })?;
    entry
        .read_to_end(&mut buf)
        .map_err(|e| zip_err(format!("cannot read record '{name}': {e}")))?;
    Ok(Some(buf))
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
    // Index of the last element addressed by the view.
    let mut last = t.offset;
    for (&n, &s) in t.size.iter().zip(&t.stride) {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or("view extent overflows")?;
    }
    let end = last
        .checked_add(1)
        .and_then(|x| x.checked_mul(elem))
        .ok_or("view extent overflows")?;
    if end > storage.len() {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) needs {end} bytes but the storage holds {}",
            t.offset,
            t.size,
            t.stride,
            storage.len()
        ));
    }
    let total = numel.checked_mul(elem).ok_or("byte count overflows")?;
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| format!("{total} bytes do not fit in memory"))?;

    let contiguous = is_contiguous(t);
    let slice = |from: usize, len: usize| -> Result<&[u8], String> {
        from.checked_mul(elem)
            .and_then(|a| Some((a, a.checked_add(len.checked_mul(elem)?)?)))
            .and_then(|(a, b)| storage.get(a..b))
            .ok_or_else(|| "view outside its storage".to_string())
    };
    if contiguous {
        out.extend_from_slice(slice(t.offset, numel)?);
        return Ok(out);
    }

    // General case: walk the outer dims, copy the innermost dim (a run when stride 1).
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
            out.extend_from_slice(slice(base, inner)?);
        } else {
            for j in 0..inner {
                out.extend_from_slice(slice(base + j * inner_stride, 1)?);
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
    Ok(out)
}

// ---------------------------------------------------------------------------------
// The pickle virtual machine
// ---------------------------------------------------------------------------------

/// A storage referenced by a persistent id.
#[derive(Clone, Debug, PartialEq)]
struct StorageRef {
    key: String,
    dtype: PtDtype,
    numel: u64,
}

/// A tensor as described by data.pkl (its data is still in the storage record).
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage: StorageRef,
    dtype: PtDtype,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// What a state_dict pickle builds besides plain values.
#[derive(Clone, Debug, PartialEq)]
enum TorchObj {
    Storage(StorageRef),
    Tensor(Box<TensorRef>),
}

impl Describe for TorchObj {
    fn describe(&self) -> String {
        match self {
            TorchObj::Storage(s) => format!("a bare storage ('{}')", s.key),
            TorchObj::Tensor(_) => "a bare tensor".into(),
        }
    }
}

type Value = pickle::Value<TorchObj>;

/// The meaning of `torch.save`'s globals and persistent ids.
struct TorchObjects;

impl Objects for TorchObjects {
    type Obj = TorchObj;

    fn call(&mut self, func: Value, args: Vec<Value>) -> VmResult<Value> {
        call(func, args)
    }

    fn build(&mut self, obj: Value, state: Value) -> VmResult<Value> {
        match obj {
            // OrderedDict state (its `_metadata` attribute): irrelevant here.
            Value::Dict(..) => {
                drop(state);
                Ok(obj)
            }
            other => Err(format!("BUILD on {}: unsupported object", other.describe())),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> VmResult<Value> {
        persistent_load(pid)
    }
}

/// Applies one of the few callables a state_dict pickle may use.
fn call(func: Value, args: Vec<Value>) -> VmResult<Value> {
    let (module, name) = match func {
        Value::Global(m, n) => (m, n),
        other => return Err(format!("cannot call {}", other.describe())),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => {
            if args.is_empty() {
                Ok(Value::Dict(Vec::new(), 1))
            } else {
                Err("collections.OrderedDict called with arguments".into())
            }
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            let n = args.len();
            if !(n == 4 || n == 6 || n == 7) || (name == "_rebuild_tensor") != (n == 4) {
                return Err(format!("torch._utils.{name} called with {n} arguments"));
            }
            let storage = match &args[0] {
                Value::Obj(TorchObj::Storage(s)) => s.clone(),
                other => return Err(format!("tensor storage is {}", other.describe())),
            };
            let dtype = storage.dtype;
            rebuild_tensor(storage, dtype, &args[1], &args[2], &args[3])
                .map(|t| Value::Obj(TorchObj::Tensor(t)))
        }
        ("torch._utils", "_rebuild_tensor_v3") => {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
            if !(args.len() == 7 || args.len() == 8) {
                return Err(format!(
                    "torch._utils._rebuild_tensor_v3 called with {} arguments",
                    args.len()
                ));
            }
            let storage = match &args[0] {
                Value::Obj(TorchObj::Storage(s)) => s.clone(),
                other => return Err(format!("tensor storage is {}", other.describe())),
            };
            let dtype = match &args[6] {
                Value::Global(m, n) if m == "torch" => PtDtype::from_torch_name(n)
                    .ok_or_else(|| format!("unsupported tensor dtype torch.{n}"))?,
                other => return Err(format!("tensor dtype is {}", other.describe())),
            };
            rebuild_tensor(storage, dtype, &args[1], &args[2], &args[3])
                .map(|t| Value::Obj(TorchObj::Tensor(t)))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            // (data, requires_grad, backward_hooks[, state]): the data tensor is what counts.
            match args.into_iter().next() {
                Some(t @ Value::Obj(TorchObj::Tensor(_))) => Ok(t),
                Some(other) => Err(format!("parameter data is {}", other.describe())),
                None => Err(format!("torch._utils.{name} called without arguments")),
            }
        }
        _ => Err(format!(
            "unsupported pickle global {module}.{name}: only a dict/OrderedDict of tensors \
             (a state_dict) can be read{}",
            if module.starts_with("torch.nn")
                || module.starts_with("__torch__")
                || name == "_reconstructor"
            {
                " (this looks like a pickled nn.Module or TorchScript archive: save \
                 model.state_dict() instead)"
            } else {
                ""
            }
        )),
    }
}

fn as_index(v: &Value, what: &str) -> VmResult<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("{what} {i} is negative")),
        other => Err(format!("{what} is {}, not an int", other.describe())),
    }
}

fn as_index_tuple(v: &Value, what: &str) -> VmResult<Vec<usize>> {
    match v {
        Value::Tuple(items, _) => items.iter().map(|x| as_index(x, what)).collect(),
        other => Err(format!("{what} is {}, not a tuple", other.describe())),
    }
}

fn rebuild_tensor(
    storage: StorageRef,
    dtype: PtDtype,
    offset: &Value,
    size: &Value,
    stride: &Value,
) -> VmResult<Box<TensorRef>> {
    let offset = as_index(offset, "storage offset")?;
    let size = as_index_tuple(size, "tensor size")?;
    let stride = as_index_tuple(stride, "tensor stride")?;
    if size.len() != stride.len() {
        return Err(format!(
            "tensor size {size:?} and stride {stride:?} differ in length"
        ));
    }
    Ok(Box::new(TensorRef {
        storage,
        dtype,
        offset,
        size,
        stride,
    }))
}

/// `('storage', storage_type, key, location, numel)` -> a storage reference.
fn persistent_load(pid: Value) -> VmResult<Value> {
    let items = match pid {
        Value::Tuple(items, _) => items,
        other => {
            return Err(format!(
                "persistent id is {}, not a tuple",
                other.describe()
            ))
        }
    };
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::Str(s) => Some(s.clone()),
            Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    };
    match items.first().and_then(text).as_deref() {
        Some("storage") => {}
        Some(kind) => return Err(format!("unsupported persistent id kind '{kind}'")),
        None => return Err("persistent id does not start with a string".into()),
    }
    if items.len() != 5 {
        return Err(format!(
            "storage persistent id has {} fields, expected 5",
            items.len()
        ));
    }
    let dtype = match &items[1] {
        Value::Global(m, n) if m == "torch" || m == "torch.storage" || m == "torch.cuda" => {
            PtDtype::from_storage_name(n)
                .ok_or_else(|| format!("unsupported storage type {m}.{n}"))?
        }
        other => return Err(format!("storage type is {}", other.describe())),
    };
    let key = match &items[2] {
        Value::Int(i) => i.to_string(),
        v => text(v).ok_or_else(|| format!("storage key is {}", v.describe()))?,
    };
    if key.is_empty() || key.contains('/') || key.contains("..") {
        return Err(format!("invalid storage key {key:?}"));
    }
    let numel = match &items[4] {
        Value::Int(n) => u64::try_from(*n).map_err(|_| format!("storage size {n} is negative"))?,
        other => return Err(format!("storage size is {}", other.describe())),
    };
    Ok(Value::Obj(TorchObj::Storage(StorageRef {
        key,
        dtype,
        numel,
    })))
}

// ---------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------

/// Writes `tensors` as `torch.save(OrderedDict(tensors))` would (zip format, records
/// 64-byte aligned), readable by `torch.load(path, weights_only=True)`. The file is
/// written under a temporary name in the same folder, then renamed over `path`.
///
/// Records: `archive/data.pkl`, `archive/byteorder`, `archive/data/<i>`,
/// `archive/version`. `.format_version` is deliberately absent: with it, torch may
/// compute record offsets assuming its own (miniz) layout instead of reading them from
/// the zip; `.data/serialization_id` is optional for `torch.load`.
pub fn write_state_dict(path: &Path, tensors: &[(String, PtTensor)]) -> Result<(), PtError> {
    write_state_dict_extra(path, tensors, &[])
}

/// [`write_state_dict`] with extra records `archive/<name>` (ignored by `torch.load`).
pub fn write_state_dict_extra(
    path: &Path,
    tensors: &[(String, PtTensor)],
    extra: &[(&str, &[u8])],
) -> Result<(), PtError> {
    let invalid = |detail: String| PtError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let mut seen = std::collections::HashSet::new();
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(invalid(format!("duplicate tensor name '{name}'")));
        }
        let need = t
            .numel()
            .and_then(|n| n.checked_mul(t.dtype.size()))
            .ok_or_else(|| invalid(format!("tensor '{name}': shape {:?} overflows", t.shape)))?;
        if t.data.len() != need {
            return Err(invalid(format!(
                "tensor '{name}': {} {:?} needs {need} bytes, data has {}",
                t.dtype,
                t.shape,
                t.data.len()
            )));
        }
        if u32::try_from(name.len()).is_err() {
            return Err(invalid(format!(
                "tensor name of {} bytes is too long",
                name.len()
            )));
        }
    }

    let pickle = pickle_state_dict(tensors);
    let mut records: Vec<(String, &[u8])> = Vec::with_capacity(tensors.len() + 3);
    records.push(("archive/data.pkl".into(), &pickle));
    records.push(("archive/byteorder".into(), b"little"));
    for (i, (_, t)) in tensors.iter().enumerate() {
        records.push((format!("archive/data/{i}"), &t.data));
    }
    records.push(("archive/version".into(), b"3\n"));
    records.extend(extra.iter().map(|(n, d)| (format!("archive/{n}"), *d)));

    let io_err = |what: &'static str| {
        move |source: io::Error| PtError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let zip_err = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(e) => io_err("cannot write")(e),
        e => invalid(format!("cannot write the zip: {e}")),
    };
    let tmp = crate::io::temp_beside(path).map_err(|e| PtError::Io {
        path: path.to_path_buf(),
        what: "cannot create a temporary file next to it",
        source: io::Error::other(format!("{e:#}")),
    })?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(tmp.as_file()));
    let opts = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, data) in &records {
        // Record data 64-byte aligned (torch mmaps storages), as torch's own writer does.
        zip.start_file_aligned(name.as_str(), opts, ZIP_ALIGN)
            .map_err(zip_err)?;
        zip.write_all(data).map_err(io_err("cannot write"))?;
    }
    let w = zip.finish().map_err(zip_err)?;
    w.into_inner()
        .map_err(|e| io_err("cannot write")(e.into_error()))?
        .sync_all()
        .map_err(io_err("cannot sync"))?;
    drop(zip);
    tmp.persist(path)
        .map_err(|e| io_err("cannot rename the temporary file onto it")(e.error))?;
    Ok(())
}

/// C-contiguous strides in elements (as torch computes them: size-0 dims count as 1).
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0usize; shape.len()];
    let mut acc = 1usize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(n.max(1));
    }
    strides
}

/// Pickle (protocol 2) writer for the handful of opcodes a state_dict needs.
struct PickleOut {
    buf: Vec<u8>,
}

impl PickleOut {
    fn op(&mut self, op: u8) {
        self.buf.push(op);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.buf.push(b'c');
        self.buf.extend_from_slice(module.as_bytes());
        self.buf.push(b'\n');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'\n');
    }

    fn put(&mut self, i: u32) {
        if let Ok(b) = u8::try_from(i) {
            self.buf.extend_from_slice(&[b'q', b]);
        } else {
            self.buf.push(b'r');
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn get(&mut self, i: u32) {
        if let Ok(b) = u8::try_from(i) {
            self.buf.extend_from_slice(&[b'h', b]);
        } else {
            self.buf.push(b'j');
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn str(&mut self, s: &str) {
        // Lengths were checked to fit in u32 by the caller.
        self.buf.push(b'X');
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: u64) {
        if let Ok(b) = u8::try_from(v) {
            self.buf.extend_from_slice(&[b'K', b]);
        } else if let Ok(h) = u16::try_from(v) {
            self.buf.push(b'M');
            self.buf.extend_from_slice(&h.to_le_bytes());
        } else if let Ok(w) = i32::try_from(v) {
            self.buf.push(b'J');
            self.buf.extend_from_slice(&w.to_le_bytes());
        } else {
            // LONG1: minimal little-endian two's complement (a sign byte if needed).
            let mut bytes = v.to_le_bytes().to_vec();
            while bytes.len() > 1
                && bytes[bytes.len() - 1] == 0
                && bytes[bytes.len() - 2] & 0x80 == 0
            {
                bytes.pop();
            }
            if bytes[bytes.len() - 1] & 0x80 != 0 {
                bytes.push(0);
            }
            self.buf.extend_from_slice(&[0x8a, bytes.len() as u8]);
            self.buf.extend_from_slice(&bytes);
        }
    }

    fn tuple_of(&mut self, values: &[usize]) {
        match values.len() {
            0 => self.op(b')'),
            n @ 1..=3 => {
                for &v in values {
                    self.int(v as u64);
                }
                self.op(0x84 + n as u8);
            }
            _ => {
                self.op(b'(');
                for &v in values {
                    self.int(v as u64);
                }
                self.op(b't');
            }
        }
    }
}

/// data.pkl for `OrderedDict((name, _rebuild_tensor_v2(...)) ...)`, storage key = index.
fn pickle_state_dict(tensors: &[(String, PtTensor)]) -> Vec<u8> {
    const MEMO_ORDERED_DICT: u32 = 0;
    const MEMO_ROOT: u32 = 1;
    const MEMO_REBUILD: u32 = 2;
    let mut p = PickleOut { buf: Vec::new() };
    p.buf.extend_from_slice(&[0x80, 2]); // PROTO 2
    p.global("collections", "OrderedDict");
    p.put(MEMO_ORDERED_DICT);
    p.op(b')');
    p.op(b'R');
    p.put(MEMO_ROOT);
    let mut storage_memo: HashMap<PtDtype, u32> = HashMap::new();
    let mut next_memo = MEMO_REBUILD + 1;
    for (i, chunk) in tensors.chunks(1000).enumerate() {
        p.op(b'(');
        for (j, (name, t)) in chunk.iter().enumerate() {
            let index = i * 1000 + j;
            p.str(name);
            if index == 0 {
                p.global("torch._utils", "_rebuild_tensor_v2");
                p.put(MEMO_REBUILD);
            } else {
                p.get(MEMO_REBUILD);
            }
            p.op(b'('); // args of _rebuild_tensor_v2
            p.op(b'('); // persistent id
            p.str("storage");
            match storage_memo.get(&t.dtype) {
                Some(&m) => p.get(m),
                None => {
                    p.global("torch", t.dtype.storage_name());
                    p.put(next_memo);
                    storage_memo.insert(t.dtype, next_memo);
                    next_memo += 1;
                }
            }
            p.str(&index.to_string());
            p.str("cpu");
            p.int(t.numel().unwrap_or(0) as u64);
            p.op(b't');
            p.op(b'Q'); // BINPERSID
            p.int(0); // storage offset
            p.tuple_of(&t.shape);
            p.tuple_of(&contiguous_strides(&t.shape));
            p.op(0x89); // requires_grad = False
            p.get(MEMO_ORDERED_DICT); // backward_hooks = OrderedDict()
            p.op(b')');
            p.op(b'R');
            p.op(b't');
            p.op(b'R');
        }
        p.op(b'u'); // SETITEMS
    }
    p.op(b'.');
    p.buf
}

/// Record data starts at multiples of this (torch mmaps storages).
const ZIP_ALIGN: u16 = 64;
