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
//!
//! This module holds the shared types (dtypes, tensors, errors); reading is in `read`,
//! the meaning of torch's pickled globals in `objects`, writing in `write`; `script`
//! reads the records of TorchScript archives, `append` adds records to them.

use std::fmt;
use std::io;
use std::path::PathBuf;

mod append;
mod objects;
mod read;
mod script;
mod write;

pub use append::append_records;
pub use read::read_state_dict;
pub use script::{is_torchscript, read_script, Script};
pub use write::{write_state_dict, write_state_dict_extra};

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
