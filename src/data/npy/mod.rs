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

use crate::pickle::{self, Describe, Objects};
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

/// Writes through a temporary file beside `path` ([`crate::io::temp_beside`]),
/// persisted over `path` at the end.
fn atomic_write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = crate::io::temp_beside(path)
        .map_err(|e| DataError::io(path, std::io::Error::other(format!("{e:#}"))))?;
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
    let value = pickle::unpickle(bytes, &mut NumpyObjects)
        .map_err(|(at, msg)| bad(format!("{msg} (byte {at})")))?;
    let (names, labels) = match value {
        Value::Tuple(items, _) | Value::List(items, _) if items.len() == 2 => {
            let mut it = items.into_iter();
            (it.next(), it.next())
        }
        other => {
            return Err(bad(format!(
                "expected a (names, labels) pair, found {}",
                other.describe()
            )))
        }
    };
    let names = names
        .map(into_strings)
        .transpose()
        .map_err(|m| bad(format!("names: {m}")))?
        .unwrap_or_default();
    let labels = labels
        .map(into_ints)
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

/// What a NumPy label pickle builds besides plain values.
#[derive(Debug, Clone, PartialEq)]
enum NpObj {
    /// `numpy.dtype(descr)`, byte order set by `BUILD` (`<`, `>`, `|`, `=`).
    Dtype(String, char),
    /// A NumPy array: shape, dtype and raw C-order data (or a list for object arrays).
    Array(Vec<usize>, Box<Value>, Box<Value>),
    /// Any other reconstructed object, kept opaque.
    Opaque(String),
}

impl Describe for NpObj {
    fn describe(&self) -> String {
        match self {
            NpObj::Dtype(d, _) => format!("numpy.dtype {d:?}"),
            NpObj::Array(..) => "numpy.ndarray".into(),
            NpObj::Opaque(name) => format!("an object {name}"),
        }
    }
}

type Value = pickle::Value<NpObj>;
type PResult<T> = std::result::Result<T, String>;

/// The meaning of the few NumPy / codecs globals a label pickle uses; other calls
/// become opaque objects (an error only if the labels need them).
struct NumpyObjects;

impl Objects for NumpyObjects {
    type Obj = NpObj;

    fn call(&mut self, func: Value, args: Vec<Value>) -> PResult<Value> {
        reduce(func, args)
    }

    fn build(&mut self, obj: Value, state: Value) -> PResult<Value> {
        build(obj, state)
    }
}

fn into_ints(v: Value) -> PResult<Vec<i64>> {
    match v {
        Value::List(items, _) | Value::Tuple(items, _) => items
            .into_iter()
            .map(|v| match v {
                Value::Int(i) => Ok(i),
                other => Err(format!("expected an int, found {}", other.describe())),
            })
            .collect(),
        Value::Obj(NpObj::Array(shape, dtype, data)) => {
            let n: usize = shape.iter().product();
            match (*dtype, *data) {
                (_, list @ Value::List(..)) => into_ints(list),
                (Value::Obj(NpObj::Dtype(descr, order)), Value::Bytes(raw)) => (0..n)
                    .map(|k| {
                        let size = int_size(&descr)
                            .ok_or_else(|| format!("array dtype {descr:?} is not integer"))?;
                        let chunk = raw
                            .get(k * size..(k + 1) * size)
                            .ok_or("array data shorter than its shape")?;
                        decode_scalar(&descr, order, chunk)
                            .and_then(|v| match v {
                                Value::Int(i) => Some(i),
                                _ => None,
                            })
                            .ok_or_else(|| format!("array dtype {descr:?} is not integer"))
                    })
                    .collect(),
                (d, _) => Err(format!("array with dtype {} not understood", d.describe())),
            }
        }
        other => Err(format!(
            "expected a list of ints, found {}",
            other.describe()
        )),
    }
}

fn into_strings(v: Value) -> PResult<Vec<String>> {
    match v {
        Value::List(items, _) | Value::Tuple(items, _) => items
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s),
                Value::Bytes(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
                other => Err(format!("expected a str, found {}", other.describe())),
            })
            .collect(),
        Value::Obj(NpObj::Array(shape, dtype, data)) => match (*dtype, *data) {
            (_, list @ Value::List(..)) => into_strings(list),
            (Value::Obj(NpObj::Dtype(descr, order)), Value::Bytes(raw))
                if descr.starts_with('U') =>
            {
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
                d.describe()
            )),
        },
        other => Err(format!(
            "expected a list of str, found {}",
            other.describe()
        )),
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

fn is_numpy(module: &str) -> bool {
    module == "numpy" || module.starts_with("numpy.")
}

/// `func(*args)` for the few callables a NumPy label pickle uses.
fn reduce(func: Value, args: Vec<Value>) -> PResult<Value> {
    let Value::Global(module, name) = func else {
        return Err(format!("REDUCE on {}", func.describe()));
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
            Some(Value::Str(descr)) => Ok(Value::Obj(NpObj::Dtype(descr, '='))),
            _ => Err("numpy.dtype without a descr".into()),
        },
        (m, "scalar") if is_numpy(m) => match (a.next(), a.next()) {
            (Some(Value::Obj(NpObj::Dtype(descr, order))), Some(Value::Bytes(raw))) => {
                decode_scalar(&descr, order, &raw)
                    .ok_or_else(|| format!("numpy scalar of dtype {descr:?} not supported"))
            }
            _ => Err("numpy scalar without dtype and bytes".into()),
        },
        (m, "_reconstruct") if is_numpy(m) => Ok(Value::Obj(NpObj::Array(
            Vec::new(),
            Box::new(Value::None),
            Box::new(Value::None),
        ))),
        (m, "_frombuffer") if is_numpy(m) => {
            let (buf, dtype, shape) = (a.next(), a.next(), a.next());
            match (buf, dtype, shape) {
                (
                    Some(Value::Bytes(raw)),
                    Some(dtype @ Value::Obj(NpObj::Dtype(..))),
                    Some(Value::Tuple(s, _)),
                ) => Ok(Value::Obj(NpObj::Array(
                    shape_of(s)?,
                    Box::new(dtype),
                    Box::new(Value::Bytes(raw)),
                ))),
                _ => Err("numpy _frombuffer call not understood".into()),
            }
        }
        _ => Ok(Value::Obj(NpObj::Opaque(format!("{module}.{name}")))),
    }
}

fn shape_of(items: Vec<Value>) -> PResult<Vec<usize>> {
    items
        .into_iter()
        .map(|v| match v {
            Value::Int(i) => usize::try_from(i).map_err(|_| "negative dimension".to_string()),
            other => Err(format!("dimension is {}", other.describe())),
        })
        .collect()
}

/// `obj.__setstate__(state)` for dtypes and arrays; other objects stay opaque.
fn build(obj: Value, state: Value) -> PResult<Value> {
    match (obj, state) {
        (Value::Obj(NpObj::Dtype(descr, _)), Value::Tuple(s, _)) => {
            let order = match s.get(1) {
                Some(Value::Str(o)) => o.chars().next().unwrap_or('='),
                _ => '=',
            };
            Ok(Value::Obj(NpObj::Dtype(descr, order)))
        }
        (Value::Obj(NpObj::Array(..)), Value::Tuple(s, _)) if s.len() == 5 => {
            let mut it = s.into_iter().skip(1);
            let (shape, dtype, fortran, data) = (it.next(), it.next(), it.next(), it.next());
            let shape = match shape {
                Some(Value::Tuple(items, _)) => shape_of(items)?,
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
            Ok(Value::Obj(NpObj::Array(
                shape,
                Box::new(dtype.unwrap_or(Value::None)),
                Box::new(data),
            )))
        }
        (obj, _) => Ok(obj),
    }
}
