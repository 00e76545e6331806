//! The pickled label file of AimCLR's preprocessed data (`train_label.pkl`).
//!
//! A small unpickler ([`crate::pickle`]) for protocols 0 to 5 that understands the values
//! such a label file holds: a `(names, labels)` tuple (or list) where `names` is a list of
//! `str` and `labels` a list of Python ints, NumPy integer scalars
//! (`numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`), or a NumPy
//! array. Anything executable is never called: globals are only recognised by name.

use std::path::Path;

use crate::data::error::{DataError, Result};
use crate::pickle::{self, Describe, Objects};

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
