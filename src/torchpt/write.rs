//! Writing of `torch.save` zip archives: the tensors are checked, `data.pkl` is
//! pickled (protocol 2, an `OrderedDict` of `_rebuild_tensor_v2` calls) and the records
//! are written, 64-byte aligned, to a temporary file that is then renamed into place.

use super::{PtDtype, PtError, PtTensor};
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

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
    check_tensors(path, tensors)?;
    let pickle = pickle_state_dict(tensors);
    let mut records: Vec<(String, &[u8])> = Vec::with_capacity(tensors.len() + 3);
    records.push(("archive/data.pkl".into(), &pickle));
    records.push(("archive/byteorder".into(), b"little"));
    for (i, (_, t)) in tensors.iter().enumerate() {
        records.push((format!("archive/data/{i}"), &t.data));
    }
    records.push(("archive/version".into(), b"3\n"));
    records.extend(extra.iter().map(|(n, d)| (format!("archive/{n}"), *d)));
    write_zip_atomic(path, &records)
}

fn invalid(path: &Path, detail: String) -> PtError {
    PtError::Invalid {
        path: path.to_path_buf(),
        detail,
    }
}

/// Names must be unique and fit the pickle's u32 lengths; data must match the shape.
fn check_tensors(path: &Path, tensors: &[(String, PtTensor)]) -> Result<(), PtError> {
    let mut seen = std::collections::HashSet::new();
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(invalid(path, format!("duplicate tensor name '{name}'")));
        }
        let need = t
            .numel()
            .and_then(|n| n.checked_mul(t.dtype.size()))
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("tensor '{name}': shape {:?} overflows", t.shape),
                )
            })?;
        if t.data.len() != need {
            return Err(invalid(
                path,
                format!(
                    "tensor '{name}': {} {:?} needs {need} bytes, data has {}",
                    t.dtype,
                    t.shape,
                    t.data.len()
                ),
            ));
        }
        if u32::try_from(name.len()).is_err() {
            return Err(invalid(
                path,
                format!("tensor name of {} bytes is too long", name.len()),
            ));
        }
    }
    Ok(())
}

/// Writes `records` as stored, 64-byte aligned zip entries to a temporary file beside
/// `path`, syncs it and renames it onto `path`.
fn write_zip_atomic(path: &Path, records: &[(String, &[u8])]) -> Result<(), PtError> {
    let io_err = |what: &'static str| {
        move |source: io::Error| PtError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let zip_err = |e| zip_error(path, e);
    let tmp = crate::io::temp_beside(path).map_err(|e| PtError::Io {
        path: path.to_path_buf(),
        what: "cannot create a temporary file next to it",
        source: io::Error::other(format!("{e:#}")),
    })?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(tmp.as_file()));
    write_aligned(&mut zip, records, path)?;
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

/// Writes each record as a stored entry whose data starts at a multiple of
/// [`ZIP_ALIGN`] (torch mmaps storages), as torch's own writer does.
pub(super) fn write_aligned<W: Write + io::Seek>(
    zip: &mut zip::ZipWriter<W>,
    records: &[(String, &[u8])],
    path: &Path,
) -> Result<(), PtError> {
    let opts = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, data) in records {
        zip.start_file_aligned(name.as_str(), opts, ZIP_ALIGN)
            .map_err(|e| zip_error(path, e))?;
        zip.write_all(data).map_err(|source| PtError::Io {
            path: path.to_path_buf(),
            what: "cannot write",
            source,
        })?;
    }
    Ok(())
}

/// A zip writer's error as a [`PtError`] naming `path`.
fn zip_error(path: &Path, e: zip::result::ZipError) -> PtError {
    match e {
        zip::result::ZipError::Io(source) => PtError::Io {
            path: path.to_path_buf(),
            what: "cannot write",
            source,
        },
        e => invalid(path, format!("cannot write the zip: {e}")),
    }
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
