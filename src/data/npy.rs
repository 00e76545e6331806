//! NumPy `.npy` files and the pickled label file of AimCLR's preprocessed data
//! (`train_position.npy` + `train_label.pkl`, method file section 6), so users who
//! already have AimCLR's frame-50 arrays can import them with `prepare npy`.
//!
//! `.npy`: format versions 1, 2 and 3, little-endian `f4`, `f8`, `i4`, `i8`, C order.
//! `f8` is converted to `f32` and `i4` widened to `i64`. Reads stream through a buffer,
//! so a 1.2 GB array is held once; writes go to a temporary file renamed into place.
//!
//! Pickle: a small unpickler for protocols 0 to 5 that understands the values such a
//! label file holds: a `(names, labels)` tuple (or list) where `names` is a list of
//! `str` and `labels` a list of Python ints, NumPy integer scalars
//! (`numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`), or a NumPy
//! array. Anything executable is never called: globals are only recognised by name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};

const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element types understood in `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    F4,
    F8,
    I4,
    I8,
}

impl NpyDtype {
    pub fn size(self) -> usize {
        match self {
            Self::F4 | Self::I4 => 4,
            Self::F8 | Self::I8 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Self::F4 => "<f4",
            Self::F8 => "<f8",
            Self::I4 => "<i4",
            Self::I8 => "<i8",
        }
    }
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
}

impl NpyHeader {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Streaming reader of a `.npy` file: the header is parsed on open, elements are read
/// in order by [`NpyReader::read_f32`] / [`NpyReader::read_i64`].
#[derive(Debug)]
pub struct NpyReader {
    path: PathBuf,
    reader: BufReader<File>,
    header: NpyHeader,
    remaining: usize,
    buf: Vec<u8>,
}

impl NpyReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let (header, offset) = read_header(&mut reader, path)?;
        let want = (header.len() as u64).saturating_mul(header.dtype.size() as u64);
        if file_len.saturating_sub(offset) < want {
            return Err(DataError::format(
                path,
                format!(
                    "truncated .npy: shape {:?} needs {want} data bytes, file has {}",
                    header.shape,
                    file_len.saturating_sub(offset)
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            remaining: header.len(),
            header,
            buf: Vec::new(),
        })
    }

    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// Elements not read yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Reads the next `out.len()` elements of a float (or integer) array as `f32`.
    pub fn read_f32(&mut self, out: &mut [f32]) -> Result<()> {
        let dtype = self.header.dtype;
        self.read_with(out, |b| match dtype {
            NpyDtype::F4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            NpyDtype::F8 => f64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])) as f32,
            NpyDtype::I4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            NpyDtype::I8 => i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])) as f32,
        })
    }

    /// Reads the next `out.len()` elements of an integer array as `i64`.
    pub fn read_i64(&mut self, out: &mut [i64]) -> Result<()> {
        let dtype = self.header.dtype;
        if matches!(dtype, NpyDtype::F4 | NpyDtype::F8) {
            return Err(DataError::format(
                &self.path,
                format!("expected an integer array, found {}", dtype.descr()),
            ));
        }
        self.read_with(out, |b| match dtype {
            NpyDtype::I4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
        })
    }

    fn read_with<T>(&mut self, out: &mut [T], convert: impl Fn(&[u8]) -> T) -> Result<()> {
        if out.len() > self.remaining {
            return Err(DataError::format(
                &self.path,
                format!(
                    "read past the end: {} of {} left",
                    out.len(),
                    self.remaining
                ),
            ));
        }
        let size = self.header.dtype.size();
        const BLOCK: usize = 1 << 16;
        for chunk in out.chunks_mut(BLOCK) {
            self.buf.resize(chunk.len() * size, 0);
            self.reader
                .read_exact(&mut self.buf)
                .map_err(|e| DataError::io(&self.path, e))?;
            for (dst, src) in chunk.iter_mut().zip(self.buf.chunks_exact(size)) {
                *dst = convert(src);
            }
        }
        self.remaining -= out.len();
        Ok(())
    }
}

/// Reads a whole array as `f32` (`f8` and integer arrays are converted).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut r = NpyReader::open(path)?;
    let mut data = vec![0.0f32; r.header.len()];
    r.read_f32(&mut data)?;
    Ok((data, r.header.shape.clone()))
}

/// Reads a whole integer array as `i64`.
pub fn read_npy_i64(path: &Path) -> Result<(Vec<i64>, Vec<usize>)> {
    let mut r = NpyReader::open(path)?;
    let mut data = vec![0i64; r.header.len()];
    r.read_i64(&mut data)?;
    Ok((data, r.header.shape.clone()))
}

/// Writes `data` with `shape` as a version-1 `<f4` `.npy`, atomically.
pub fn write_npy_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(DataError::Invalid(format!(
            "write_npy_f32: shape {shape:?} holds {n} values, data has {}",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header, padded to 64 bytes, ending in \n.
    let pad = 63 - (10 + header.len()) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| DataError::Invalid(format!("npy header too long for shape {shape:?}")))?;

    atomic_write(path, |w| {
        w.write_all(NPY_MAGIC)?;
        w.write_all(&[1, 0])?;
        w.write_all(&header_len.to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in data.chunks(1 << 14) {
            buf.clear();
            for v in chunk {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Writes through a temporary file in `path`'s directory, renamed over `path` at the end.
fn atomic_write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::io::remove_stale_temps(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // 0666 before the umask, like any Unix tool (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.{}.", std::process::id()))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        body(&mut w)
            .and_then(|()| w.flush())
            .map_err(|e| DataError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

fn read_header(r: &mut impl Read, path: &Path) -> Result<(NpyHeader, u64)> {
    let bad = |msg: String| DataError::format(path, msg);
    let io = |e| DataError::io(path, e);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| bad("not a .npy file: shorter than its magic".into()))?;
    if &magic[..6] != NPY_MAGIC {
        return Err(bad("not a .npy file: bad magic".into()));
    }
    let major = magic[6];
    let (len, prefix) = match major {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(io)?;
            (usize::from(u16::from_le_bytes(b)), 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(bad(format!("implausible .npy header length {len}")));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).map_err(io)?;
    let text = String::from_utf8_lossy(&text);
    let header = parse_header_dict(&text).map_err(|m| bad(format!("npy header: {m}")))?;
    Ok((header, (prefix + len) as u64))
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header_dict(text: &str) -> std::result::Result<NpyHeader, String> {
    let value_of = |key: &str| -> std::result::Result<&str, String> {
        let at = text
            .find(&format!("'{key}'"))
            .or_else(|| text.find(&format!("\"{key}\"")))
            .ok_or_else(|| format!("no {key:?} in {text:?}"))?;
        let rest = &text[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("no ':' after {key:?}"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = value_of("descr")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"');
    let descr = quote
        .and_then(|q| descr[1..].split(q).next())
        .ok_or_else(|| "descr is not a string".to_string())?;
    let little = cfg!(target_endian = "little");
    let dtype = match descr {
        "<f4" => NpyDtype::F4,
        "<f8" => NpyDtype::F8,
        "<i4" => NpyDtype::I4,
        "<i8" => NpyDtype::I8,
        "=f4" if little => NpyDtype::F4,
        "=f8" if little => NpyDtype::F8,
        "=i4" if little => NpyDtype::I4,
        "=i8" if little => NpyDtype::I8,
        other => {
            return Err(format!(
                "dtype {other:?} not supported (little-endian f4, f8, i4, i8 only)"
            ))
        }
    };
    if value_of("fortran_order")?.starts_with("True") {
        return Err("fortran_order arrays are not supported (save in C order)".into());
    }
    let shape = value_of("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| "shape is not a tuple".to_string())?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("shape: {e}"))?;
    // The byte count must fit in memory arithmetic (and in libtorch's i64 sizes).
    let bytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= i64::MAX as usize);
    if bytes.is_none() {
        return Err(format!("shape {shape:?}: element count overflows"));
    }
    Ok(NpyHeader { dtype, shape })
}

// ---------------------------------------------------------------------------------
// Pickle
// ---------------------------------------------------------------------------------

/// Reads AimCLR's label pickle: `(sample_names, labels)`.
pub fn read_label_pickle(path: &Path) -> Result<(Vec<String>, Vec<i64>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_label_pickle(&bytes, path)
}

/// [`read_label_pickle`] on bytes; `path` only names the file in errors.
pub fn parse_label_pickle(bytes: &[u8], path: &Path) -> Result<(Vec<String>, Vec<i64>)> {
    let bad = |msg: String| DataError::format(path, format!("label pickle: {msg}"));
    let value = Unpickler::new(bytes).run().map_err(&bad)?;
    let (names, labels) = match value {
        Value::Tuple(items) | Value::List(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            (it.next(), it.next())
        }
        other => {
            return Err(bad(format!(
                "expected a (names, labels) pair, found {}",
                other.kind()
            )))
        }
    };
    let names = names
        .map(Value::into_strings)
        .transpose()
        .map_err(|m| bad(format!("names: {m}")))?
        .unwrap_or_default();
    let labels = labels
        .map(Value::into_ints)
        .transpose()
        .map_err(|m| bad(format!("labels: {m}")))?
        .unwrap_or_default();
    if names.len() != labels.len() {
        return Err(bad(format!(
            "{} names but {} labels",
            names.len(),
            labels.len()
        )));
    }
    Ok((names, labels))
}

/// The Python values a label pickle is made of.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// `numpy.dtype(descr)`, byte order set by `BUILD` (`<`, `>`, `|`, `=`).
    Dtype(String, char),
    /// A NumPy array: shape, dtype and raw C-order data (or a list for object arrays).
    Array(Vec<usize>, Box<Value>, Box<Value>),
    /// Any other reconstructed object, kept opaque.
    Object(String),
    Mark,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
            Self::Bytes(_) => "bytes",
            Self::List(_) => "list",
            Self::Tuple(_) => "tuple",
            Self::Dict(_) => "dict",
            Self::Global(..) => "global",
            Self::Dtype(..) => "numpy.dtype",
            Self::Array(..) => "numpy.ndarray",
            Self::Object(_) => "object",
            Self::Mark => "mark",
        }
    }

    fn into_ints(self) -> std::result::Result<Vec<i64>, String> {
        match self {
            Self::List(items) | Self::Tuple(items) => items
                .into_iter()
                .map(|v| match v {
                    Self::Int(i) => Ok(i),
                    other => Err(format!("expected an int, found {}", other.kind())),
                })
                .collect(),
            Self::Array(shape, dtype, data) => {
                let n: usize = shape.iter().product();
                match (*dtype, *data) {
                    (_, Self::List(items)) => Self::List(items).into_ints(),
                    (Self::Dtype(descr, order), Self::Bytes(raw)) => (0..n)
                        .map(|k| {
                            let size = int_size(&descr)
                                .ok_or_else(|| format!("array dtype {descr:?} is not integer"))?;
                            let chunk = raw
                                .get(k * size..(k + 1) * size)
                                .ok_or("array data shorter than its shape")?;
                            decode_scalar(&descr, order, chunk)
                                .and_then(|v| match v {
                                    Self::Int(i) => Some(i),
                                    _ => None,
                                })
                                .ok_or_else(|| format!("array dtype {descr:?} is not integer"))
                        })
                        .collect(),
                    (d, _) => Err(format!("array with dtype {} not understood", d.kind())),
                }
            }
            other => Err(format!("expected a list of ints, found {}", other.kind())),
        }
    }

    fn into_strings(self) -> std::result::Result<Vec<String>, String> {
        match self {
            Self::List(items) | Self::Tuple(items) => items
                .into_iter()
                .map(|v| match v {
                    Self::Str(s) => Ok(s),
                    Self::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
                    other => Err(format!("expected a str, found {}", other.kind())),
                })
                .collect(),
            Self::Array(shape, dtype, data) => match (*dtype, *data) {
                (_, Self::List(items)) => Self::List(items).into_strings(),
                (Self::Dtype(descr, order), Self::Bytes(raw)) if descr.starts_with('U') => {
                    let n: usize = shape.iter().product();
                    let width = descr[1..]
                        .parse::<usize>()
                        .map_err(|_| format!("bad dtype {descr:?}"))?;
                    (0..n)
                        .map(|k| {
                            let cell = raw
                                .get(k * width * 4..(k + 1) * width * 4)
                                .ok_or("array data shorter than its shape")?;
                            Ok(cell
                                .chunks_exact(4)
                                .map(|c| {
                                    let b = [c[0], c[1], c[2], c[3]];
                                    if order == '>' {
                                        u32::from_be_bytes(b)
                                    } else {
                                        u32::from_le_bytes(b)
                                    }
                                })
                                .take_while(|&u| u != 0)
                                .filter_map(char::from_u32)
                                .collect())
                        })
                        .collect()
                }
                (d, _) => Err(format!(
                    "string array with dtype {} not understood",
                    d.kind()
                )),
            },
            other => Err(format!("expected a list of str, found {}", other.kind())),
        }
    }
}

fn int_size(descr: &str) -> Option<usize> {
    match descr {
        "i1" | "u1" | "b1" => Some(1),
        "i2" | "u2" => Some(2),
        "i4" | "u4" => Some(4),
        "i8" | "u8" => Some(8),
        _ => None,
    }
}

/// Decodes one NumPy scalar of dtype `descr` (`i8`, `f4`, ...) from its raw bytes.
fn decode_scalar(descr: &str, order: char, raw: &[u8]) -> Option<Value> {
    let mut b = [0u8; 8];
    let n = raw.len().min(8);
    b[..n].copy_from_slice(&raw[..n]);
    if order == '>' {
        b[..n].reverse();
    }
    let kind = descr.as_bytes().first()?;
    let size: usize = descr.get(1..)?.parse().ok()?;
    if size != raw.len() {
        return None;
    }
    let v = match (kind, size) {
        (b'i', 1) => Value::Int(i64::from(b[0] as i8)),
        (b'i', 2) => Value::Int(i64::from(i16::from_le_bytes([b[0], b[1]]))),
        (b'i', 4) => Value::Int(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        (b'i', 8) => Value::Int(i64::from_le_bytes(b)),
        (b'u', 1) => Value::Int(i64::from(b[0])),
        (b'u', 2) => Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))),
        (b'u', 4) => Value::Int(i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        (b'u', 8) => Value::Int(i64::try_from(u64::from_le_bytes(b)).ok()?),
        (b'b', 1) => Value::Bool(b[0] != 0),
        (b'f', 4) => Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        (b'f', 8) => Value::Float(f64::from_le_bytes(b)),
        _ => return None,
    };
    Some(v)
}

/// The pickle virtual machine, restricted to building plain values.
struct Unpickler<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<usize, Value>,
}

type PResult<T> = std::result::Result<T, String>;

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> PResult<u64> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn sized(&mut self, n: usize) -> PResult<usize> {
        usize::try_from(self.le(n)?).map_err(|_| "length overflow".to_string())
    }

    fn line_bytes(&mut self) -> PResult<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("unterminated text at byte {}", self.pos))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line(&mut self) -> PResult<&'a str> {
        std::str::from_utf8(self.line_bytes()?).map_err(|_| "text opcode is not UTF-8".to_string())
    }

    fn pop(&mut self) -> PResult<Value> {
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&mut self) -> PResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".to_string())
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or_else(|| "no mark on the stack".to_string())?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn str_from(bytes: &[u8]) -> PResult<Value> {
        String::from_utf8(bytes.to_vec())
            .map(Value::Str)
            .map_err(|_| "string is not UTF-8".to_string())
    }

    fn run(mut self) -> PResult<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'(' => self.stack.push(Value::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'I' => {
                    let v = match self.line()?.trim() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => Value::Int(t.parse().map_err(|_| format!("bad INT {t:?}"))?),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let t = self.line()?.trim().trim_end_matches('L');
                    let v = t
                        .parse()
                        .map_err(|_| format!("LONG {t:?} does not fit i64"))?;
                    self.stack.push(Value::Int(v));
                }
                b'F' => {
                    let t = self.line()?.trim();
                    let v = t.parse().map_err(|_| format!("bad FLOAT {t:?}"))?;
                    self.stack.push(Value::Float(v));
                }
                b'G' => {
                    let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "short float")?;
                    self.stack.push(Value::Float(f64::from_be_bytes(b)));
                }
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.sized(4)?
                    };
                    let raw = self.take(n)?;
                    if n > 8 {
                        return Err(format!("integer of {n} bytes does not fit i64"));
                    }
                    let mut b = if raw.last().is_some_and(|&h| h & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    b[..n].copy_from_slice(raw);
                    self.stack.push(Value::Int(i64::from_le_bytes(b)));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.sized(4)?,
                        0x8c => usize::from(self.u8()?),
                        _ => self.sized(8)?,
                    };
                    let s = self.take(n)?;
                    self.stack.push(Self::str_from(s)?);
                }
                b'V' => {
                    // raw-unicode-escape: latin-1 bytes plus \uXXXX escapes.
                    let t: String = self.line_bytes()?.iter().map(|&b| char::from(b)).collect();
                    self.stack.push(Value::Str(raw_unicode_unescape(&t)?));
                }
                b'S' => {
                    let t = self.line()?.trim();
                    let inner = t
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| t.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| format!("bad STRING {t:?}"))?;
                    self.stack.push(Value::Str(inner.replace("\\'", "'")));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.sized(4)?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let s = self.take(n)?;
                    self.stack
                        .push(Value::Str(s.iter().map(|&b| char::from(b)).collect()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.sized(4)?,
                        b'C' => usize::from(self.u8()?),
                        _ => self.sized(8)?,
                    };
                    let s = self.take(n)?;
                    self.stack.push(Value::Bytes(s.to_vec()));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                0x8f => self.stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b't' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Value::Dict(pairs));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(v),
                        other => return Err(format!("APPEND to a {}", other.kind())),
                    }
                }
                b'e' | 0x90 => {
                    let vs = self.pop_mark()?;
                    match self.top()? {
                        Value::List(items) => items.extend(vs),
                        other => return Err(format!("APPENDS to a {}", other.kind())),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    let new = pairs(items)?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(new),
                        other => return Err(format!("SETITEM on a {}", other.kind())),
                    }
                }
                b'p' => {
                    let i = self.line()?.trim().parse().map_err(|_| "bad PUT index")?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'q' | b'r' => {
                    let i = if op == b'q' {
                        usize::from(self.u8()?)
                    } else {
                        self.sized(4)?
                    };
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let v = self.top()?.clone();
                    self.memo.insert(self.memo.len(), v);
                }
                b'g' | b'h' | b'j' => {
                    let i = match op {
                        b'g' => self.line()?.trim().parse().map_err(|_| "bad GET index")?,
                        b'h' => usize::from(self.u8()?),
                        _ => self.sized(4)?,
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("memo {i} was never stored"))?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = reduce(func, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Object(format!("{cls:?}")));
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Object(format!("{cls:?}")));
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    self.stack.push(build(obj, state)?);
                }
                _ => {
                    return Err(format!(
                        "opcode 0x{op:02x} at byte {at} is not supported by this reader"
                    ))
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> PResult<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return Err("odd number of dict items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn is_numpy(module: &str) -> bool {
    module == "numpy" || module.starts_with("numpy.")
}

/// `func(*args)` for the few callables a NumPy label pickle uses.
fn reduce(func: Value, args: Value) -> PResult<Value> {
    let Value::Global(module, name) = func else {
        return Err(format!("REDUCE on a {}", func.kind()));
    };
    let args = match args {
        Value::Tuple(a) => a,
        other => return Err(format!("REDUCE arguments are a {}", other.kind())),
    };
    let mut a = args.into_iter();
    match (module.as_str(), name.as_str()) {
        // Protocol 0..2 pickle `bytes` as _codecs.encode(str, "latin1").
        ("_codecs", "encode") => match (a.next(), a.next()) {
            (Some(Value::Str(s)), Some(Value::Str(enc)))
                if enc.eq_ignore_ascii_case("latin1") || enc.eq_ignore_ascii_case("latin-1") =>
            {
                s.chars()
                    .map(|c| u8::try_from(u32::from(c)).map_err(|_| "non-latin1 char".to_string()))
                    .collect::<PResult<Vec<u8>>>()
                    .map(Value::Bytes)
            }
            _ => Err("unsupported _codecs.encode call".into()),
        },
        (m, "dtype") if is_numpy(m) => match a.next() {
            Some(Value::Str(descr)) => Ok(Value::Dtype(descr, '=')),
            _ => Err("numpy.dtype without a descr".into()),
        },
        (m, "scalar") if is_numpy(m) => match (a.next(), a.next()) {
            (Some(Value::Dtype(descr, order)), Some(Value::Bytes(raw))) => {
                decode_scalar(&descr, order, &raw)
                    .ok_or_else(|| format!("numpy scalar of dtype {descr:?} not supported"))
            }
            _ => Err("numpy scalar without dtype and bytes".into()),
        },
        (m, "_reconstruct") if is_numpy(m) => Ok(Value::Array(
            Vec::new(),
            Box::new(Value::None),
            Box::new(Value::None),
        )),
        (m, "_frombuffer") if is_numpy(m) => {
            let (buf, dtype, shape) = (a.next(), a.next(), a.next());
            match (buf, dtype, shape) {
                (
                    Some(Value::Bytes(raw)),
                    Some(dtype @ Value::Dtype(..)),
                    Some(Value::Tuple(s)),
                ) => Ok(Value::Array(
                    shape_of(s)?,
                    Box::new(dtype),
                    Box::new(Value::Bytes(raw)),
                )),
                _ => Err("numpy _frombuffer call not understood".into()),
            }
        }
        _ => Ok(Value::Object(format!("{module}.{name}"))),
    }
}

fn shape_of(items: Vec<Value>) -> PResult<Vec<usize>> {
    items
        .into_iter()
        .map(|v| match v {
            Value::Int(i) => usize::try_from(i).map_err(|_| "negative dimension".to_string()),
            other => Err(format!("dimension is a {}", other.kind())),
        })
        .collect()
}

/// `obj.__setstate__(state)` for dtypes and arrays; other objects stay opaque.
fn build(obj: Value, state: Value) -> PResult<Value> {
    match (obj, state) {
        (Value::Dtype(descr, _), Value::Tuple(s)) => {
            let order = match s.get(1) {
                Some(Value::Str(o)) => o.chars().next().unwrap_or('='),
                _ => '=',
            };
            Ok(Value::Dtype(descr, order))
        }
        (Value::Array(..), Value::Tuple(s)) if s.len() == 5 => {
            let mut it = s.into_iter().skip(1);
            let (shape, dtype, fortran, data) = (it.next(), it.next(), it.next(), it.next());
            let shape = match shape {
                Some(Value::Tuple(items)) => shape_of(items)?,
                _ => return Err("array state without a shape".into()),
            };
            if fortran == Some(Value::Bool(true)) {
                let n: usize = shape.iter().product();
                if shape.iter().filter(|&&d| d > 1).count() > 1 && n > 1 {
                    return Err("Fortran-order arrays are not supported".into());
                }
            }
            let data = match data {
                Some(Value::Str(s)) => Value::Bytes(s.chars().map(|c| c as u32 as u8).collect()),
                Some(v) => v,
                None => Value::None,
            };
            Ok(Value::Array(
                shape,
                Box::new(dtype.unwrap_or(Value::None)),
                Box::new(data),
            ))
        }
        (obj, _) => Ok(obj),
    }
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 `UNICODE` opcode).
fn raw_unicode_unescape(text: &str) -> PResult<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u') | Some('U')) {
            let width = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(width).collect();
            let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape \\{hex}"))?;
            out.push(char::from_u32(code).ok_or_else(|| format!("bad code point {code:x}"))?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}
