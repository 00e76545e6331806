//! PKU-MMD raw data (method file section 6): per-video skeleton `.txt` (one frame per
//! line, 150 numbers = 2 persons x 25 joints x xyz), per-video label `.txt` (lines
//! `class,start,end,confidence`, class 1-based of 51) and the benchmark split files
//! (`Training videos: 0002-L, 0002-M, ...` then `Validataion videos: ...`). An action
//! instance is frames `[start - 1, end)` of its video (AimCLR's cut), centre-cropped
//! to 300 frames when longer (AimCLR's reader), which then goes through the same
//! frame-50 normalisation as NTU.

use std::path::Path;

use super::error::{DataError, Result};
use super::ntu::{fields, not_a_number, parse_f32, Lines};
use super::{RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

/// PKU-MMD classes (Part I; Part II uses the same label ids).
pub const PKU_CLASSES: usize = 51;
/// Numbers per skeleton line.
pub const PKU_FIELDS: usize = PERSONS * NTU_JOINTS * CHANNELS;

/// Reads one PKU-MMD skeleton file.
pub fn parse_pku_skeleton_file(path: &Path) -> Result<RawSeq> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_pku_skeleton_bytes(&bytes, path)
}

/// Parses a PKU-MMD skeleton text: each non-blank line is a frame of exactly 150
/// numbers, person 0's 25 joints (x y z each) then person 1's.
pub fn parse_pku_skeleton_bytes(bytes: &[u8], path: &Path) -> Result<RawSeq> {
    let mut frames: Vec<[f32; PKU_FIELDS]> = Vec::new();
    let mut lines = Lines::new(bytes);
    while let Some((line, text)) = lines.next_nonblank() {
        let mut row = [0.0f32; PKU_FIELDS];
        let mut count = 0;
        for field in fields(text) {
            if count < PKU_FIELDS {
                row[count] = parse_f32(field).ok_or_else(|| not_a_number(field, path, line))?;
            }
            count += 1;
        }
        if count != PKU_FIELDS {
            return Err(DataError::parse(
                path,
                line,
                format!("{count} numbers, expected {PKU_FIELDS} (2 persons x 25 joints x xyz)"),
            ));
        }
        frames.push(row);
    }
    if frames.is_empty() {
        return Err(DataError::parse(path, 1, "no frames"));
    }
    let t_len = frames.len();
    let mut data = vec![0.0f32; CHANNELS * t_len * NTU_JOINTS * PERSONS];
    for (t, row) in frames.iter().enumerate() {
        for m in 0..PERSONS {
            for v in 0..NTU_JOINTS {
                for c in 0..CHANNELS {
                    data[((c * t_len + t) * NTU_JOINTS + v) * PERSONS + m] =
                        row[(m * NTU_JOINTS + v) * CHANNELS + c];
                }
            }
        }
    }
    Ok(RawSeq {
        frames: t_len,
        data,
    })
}

/// One labelled action instance of a PKU-MMD video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PkuAction {
    /// 1-based class id.
    pub class: u32,
    /// 1-based first frame.
    pub start: usize,
    /// Last frame (inclusive in 1-based terms, exclusive in 0-based ones).
    pub end: usize,
    pub confidence: f32,
}

impl PkuAction {
    /// The 0-based class label.
    pub fn label(&self) -> i64 {
        i64::from(self.class) - 1
    }
}

/// Reads a PKU-MMD label file.
pub fn read_pku_labels(path: &Path) -> Result<Vec<PkuAction>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_pku_labels(&bytes, path)
}

/// Parses lines `class,start,end,confidence` (confidence optional; commas and/or
/// whitespace separate). Classes must lie in `1..=51` and `end >= start`.
pub fn parse_pku_labels(bytes: &[u8], path: &Path) -> Result<Vec<PkuAction>> {
    let mut out = Vec::new();
    let mut lines = Lines::new(bytes);
    while let Some((line, text)) = lines.next_nonblank() {
        let parts: Vec<&[u8]> = text
            .split(|&b| b == b',' || b.is_ascii_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(DataError::parse(
                path,
                line,
                format!(
                    "{} fields, expected class,start,end,confidence",
                    parts.len()
                ),
            ));
        }
        let int = |field: &[u8]| -> Result<usize> {
            std::str::from_utf8(field)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| not_a_number(field, path, line))
        };
        let (class, start, end) = (int(parts[0])?, int(parts[1])?, int(parts[2])?);
        let confidence = match parts.get(3) {
            Some(f) => parse_f32(f).ok_or_else(|| not_a_number(f, path, line))?,
            None => 1.0,
        };
        if !(1..=PKU_CLASSES).contains(&class) {
            return Err(DataError::parse(
                path,
                line,
                format!("class {class} outside 1..={PKU_CLASSES}"),
            ));
        }
        if end < start {
            return Err(DataError::parse(
                path,
                line,
                format!("end frame {end} before start frame {start}"),
            ));
        }
        out.push(PkuAction {
            class: class as u32,
            start,
            end,
            confidence,
        });
    }
    Ok(out)
}

/// Frames `[start - 1, end)` of `seq`, clipped to its length (as a Python slice would
/// be; `start == 0` is read as 1). `None` when nothing is left.
pub fn cut_instance(seq: &RawSeq, start: usize, end: usize) -> Option<RawSeq> {
    let from = start.saturating_sub(1).min(seq.frames);
    let to = end.min(seq.frames);
    if to <= from {
        return None;
    }
    let len = to - from;
    let row = NTU_JOINTS * PERSONS;
    let mut data = Vec::with_capacity(CHANNELS * len * row);
    for c in 0..CHANNELS {
        let base = c * seq.frames * row;
        data.extend_from_slice(&seq.data[base + from * row..base + to * row]);
    }
    Some(RawSeq { frames: len, data })
}

/// Frames AimCLR keeps of an instance: longer ones are centre-cropped to this many
/// before the frame-50 resize (Levigty/AimCLR `tools/utils/pku_read_skeleton.py`,
/// `read_xyz`).
pub const PKU_MAX_FRAMES: usize = 300;

/// The middle `max` frames of `seq` when it is longer (AimCLR's crop: first kept
/// frame `(len - max) / 2`, rounded down); `seq` itself otherwise.
pub fn center_crop(seq: RawSeq, max: usize) -> RawSeq {
    if seq.frames <= max || max == 0 {
        return seq;
    }
    let from = (seq.frames - max) / 2;
    cut_instance(&seq, from + 1, from + max).unwrap_or(seq)
}

/// Video ids of a PKU-MMD benchmark split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkuSplit {
    pub train: Vec<String>,
    pub test: Vec<String>,
}

/// Reads a PKU-MMD split file.
pub fn read_pku_split(path: &Path) -> Result<PkuSplit> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_pku_split(&bytes, path)
}

/// Parses a split file: a header `Training videos:` then comma-separated ids (on the
/// same line and/or the following ones), then `Validation videos:` (also spelt
/// `Validataion`, or `Testing`/`Test`) and its ids.
pub fn parse_pku_split(bytes: &[u8], path: &Path) -> Result<PkuSplit> {
    let mut split = PkuSplit::default();
    let mut current: Option<bool> = None; // Some(true) = train
    let mut lines = Lines::new(bytes);
    while let Some((line, text)) = lines.next_nonblank() {
        let text = String::from_utf8_lossy(text);
        let mut ids = text.as_ref();
        if let Some((head, rest)) = text.split_once(':') {
            let head = head.to_ascii_lowercase();
            if head.contains("train") {
                current = Some(true);
            } else if head.contains("valid") || head.contains("test") {
                current = Some(false);
            } else {
                return Err(DataError::parse(
                    path,
                    line,
                    format!("unknown header {head:?} (expected Training/Validation/Testing)"),
                ));
            }
            ids = rest;
        }
        let ids = ids.split(',').map(str::trim).filter(|s| !s.is_empty());
        for id in ids {
            if id.contains(char::is_whitespace) {
                return Err(DataError::parse(path, line, format!("bad video id {id:?}")));
            }
            match current {
                Some(true) => split.train.push(id.to_owned()),
                Some(false) => split.test.push(id.to_owned()),
                None => {
                    return Err(DataError::parse(
                        path,
                        line,
                        "video ids before a 'Training videos:' header",
                    ))
                }
            }
        }
    }
    if split.train.is_empty() && split.test.is_empty() {
        return Err(DataError::parse(path, 1, "no video ids"));
    }
    Ok(split)
}
