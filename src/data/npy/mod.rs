//! NumPy `.npy` files and the pickled label file of AimCLR's preprocessed data
//! (`train_position.npy` + `train_label.pkl`, method file section 6), so users who
//! already have AimCLR's frame-50 arrays can import them with `prepare npy`.
//!
//! `.npy`: format versions 1, 2 and 3, little-endian `f4`, `f8`, `i4`, `i8`, C order.
//! `f8` is converted to `f32` and `i4` widened to `i64`. Reads stream through a buffer,
//! so a 1.2 GB array is held once; writes go to a temporary file renamed into place.
//!
//! The label pickle has its own reader (`label_pickle`: [`read_label_pickle`],
//! [`parse_label_pickle`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};

mod label_pickle;

pub use label_pickle::{parse_label_pickle, read_label_pickle};

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
