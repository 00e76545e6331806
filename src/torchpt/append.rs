//! Appending records to a zip archive written by someone else (a TorchScript module
//! saved by libtorch) without rewriting what is there. The new records are laid out
//! by `write`'s aligned writer (stored, data 64-byte aligned) at the offset where the
//! central directory began; the original central directory follows byte for byte, then
//! the new records' central entries and new end records (zip64 ones when the archive
//! had them, as torch's writer does). Every byte before the old central directory, and
//! the old central directory itself, stay as they were.

use super::write::write_aligned;
use super::PtError;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// The end records fit in this many last bytes (a zip comment is at most 65,535).
const TAIL: u64 = 22 + 65_535 + 20 + 56;

/// Appends `records` (full names, top folder included) to the zip archive `path` in
/// place and syncs it.
pub fn append_records(path: &Path, records: &[(String, &[u8])]) -> Result<(), PtError> {
    let io_err = |what: &'static str| {
        move |source: io::Error| PtError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let bad = |detail: String| PtError::Zip {
        path: path.to_path_buf(),
        detail: format!("cannot append to the zip: {detail}"),
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("cannot open for appending"))?;
    let len = file.metadata().map_err(io_err("cannot read"))?.len();
    let at = len.saturating_sub(TAIL);
    let tail = read_at(&mut file, at, len - at).map_err(io_err("cannot read"))?;
    let old = End::parse(&tail, at).map_err(bad)?;
    let old_cd = read_at(&mut file, old.cd_start, old.cd_len).map_err(io_err("cannot read"))?;

    // The new records as the zip crate lays them out at their final offsets.
    let mut mini = Shifted {
        base: old.cd_start,
        buf: Cursor::new(Vec::new()),
    };
    let mut zip = zip::ZipWriter::new(&mut mini);
    write_aligned(&mut zip, records, path)?;
    zip.finish()
        .map_err(|e| bad(format!("writing the new records: {e}")))?;
    drop(zip);
    let bytes = mini.buf.into_inner();
    let new = End::parse(&bytes, old.cd_start).map_err(bad)?;
    let split = (new.cd_start.checked_sub(old.cd_start)).and_then(|d| usize::try_from(d).ok());
    let (local, new_cd) = split
        .and_then(|at| Some((bytes.get(..at)?, bytes.get(at..at + new.cd_len as usize)?)))
        .ok_or_else(|| bad("the new records' central directory is out of place".into()))?;

    let mut out = Vec::with_capacity(local.len() + old_cd.len() + new_cd.len() + 98);
    out.extend_from_slice(local);
    out.extend_from_slice(&old_cd);
    out.extend_from_slice(new_cd);
    let end = End {
        cd_start: old.cd_start + local.len() as u64,
        cd_len: (old_cd.len() + new_cd.len()) as u64,
        entries: old.entries + new.entries,
        zip64_versions: old.zip64_versions,
        comment: old.comment,
    };
    end.write(&mut out);
    file.seek(SeekFrom::Start(old.cd_start))
        .and_then(|_| file.write_all(&out))
        .and_then(|()| file.set_len(old.cd_start + out.len() as u64))
        .map_err(io_err("cannot write"))?;
    file.sync_all().map_err(io_err("cannot sync"))
}

fn read_at(file: &mut std::fs::File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(at))?;
    file.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shorter than its zip records say",
        ));
    }
    Ok(buf)
}

/// What an archive's end records say.
struct End {
    /// Offset and length of the central directory.
    cd_start: u64,
    cd_len: u64,
    /// Number of entries.
    entries: u64,
    /// "Version made by" and "needed" of the zip64 end record, if the archive has one.
    zip64_versions: Option<[u8; 4]>,
    /// The archive comment.
    comment: Vec<u8>,
}

impl End {
    /// The end records of an archive whose last bytes are `tail`, `tail[0]` lying at
    /// offset `at`; the central directory must end where they begin.
    fn parse(tail: &[u8], at: u64) -> Result<End, String> {
        let le = |i: usize, n: usize| -> Option<u64> {
            let b = tail.get(i..i.checked_add(n)?)?;
            Some(b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
        };
        let pos = (0..=tail.len().saturating_sub(22))
            .rev()
            .find(|&i| {
                le(i, 4) == Some(u64::from(EOCD))
                    && le(i + 20, 2).is_some_and(|c| 22 + c as usize == tail.len() - i)
            })
            .ok_or("no end-of-central-directory record")?;
        let missing = || "truncated end records".to_string();
        let mut end = End {
            entries: le(pos + 10, 2).ok_or_else(missing)?,
            cd_len: le(pos + 12, 4).ok_or_else(missing)?,
            cd_start: le(pos + 16, 4).ok_or_else(missing)?,
            zip64_versions: None,
            comment: tail[pos + 22..].to_vec(),
        };
        let mut end_start = at + pos as u64;
        if pos >= 20 && le(pos - 20, 4) == Some(u64::from(ZIP64_LOCATOR)) {
            let rec = le(pos - 12, 8).ok_or_else(missing)?;
            let i = rec
                .checked_sub(at)
                .map(|r| r as usize)
                .filter(|&i| le(i, 4) == Some(u64::from(ZIP64_EOCD)))
                .ok_or("no zip64 end record where its locator points")?;
            end.zip64_versions = tail.get(i + 12..i + 16).and_then(|b| b.try_into().ok());
            end.entries = le(i + 32, 8).ok_or_else(missing)?;
            end.cd_len = le(i + 40, 8).ok_or_else(missing)?;
            end.cd_start = le(i + 48, 8).ok_or_else(missing)?;
            end_start = rec;
        }
        if end.cd_start.checked_add(end.cd_len) != Some(end_start) {
            return Err(format!(
                "the central directory ({} bytes at {}) does not end where the end records \
                 begin ({end_start})",
                end.cd_len, end.cd_start
            ));
        }
        Ok(end)
    }

    /// The end records after a central directory that ends where `out` ends; `out[0]`
    /// lies at the old central directory's offset.
    fn write(&self, out: &mut Vec<u8>) {
        let zip64_at = self.cd_start + self.cd_len;
        if let Some(versions) = self.zip64_versions {
            out.extend_from_slice(&ZIP64_EOCD.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&versions);
            out.extend_from_slice(&[0; 8]); // this disk, the central directory's disk
            for v in [self.entries, self.entries, self.cd_len, self.cd_start] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&zip64_at.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        let n = u16::try_from(self.entries).unwrap_or(u16::MAX);
        out.extend_from_slice(&EOCD.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        for v in [self.cd_len, self.cd_start] {
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.comment);
    }
}

/// An in-memory writer whose positions start at `base`, so that the zip crate lays out
/// records (offsets, alignment) as they will lie in the file.
struct Shifted {
    base: u64,
    buf: Cursor<Vec<u8>>,
}

impl Write for Shifted {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Shifted {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let pos = match pos {
            SeekFrom::Start(p) => SeekFrom::Start(p.checked_sub(self.base).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "seek before the new records")
            })?),
            other => other,
        };
        Ok(self.buf.seek(pos)? + self.base)
    }
}
