//! NTU RGB+D `.skeleton` reader, file-name ids and the official train/test splits
//! (method file section 6; the reader AimCLR's `ntu_gendata` uses, restated).
//!
//! A file is read once and parsed in place: lines are sliced out of the byte buffer and
//! numbers are parsed by a small float parser, so no field allocates. Only x, y, z of
//! each joint are kept; bodies fill person slots 0 and 1 in order of appearance within
//! each frame, a third body is checked and dropped, and frames without a body stay zero.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::error::{DataError, Result};
use super::{RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

/// NTU-60 cross-subject training performers.
pub const NTU60_XSUB_TRAIN: [u16; 20] = [
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
];

/// NTU-120 cross-subject training performers (the NTU-60 ones plus 33 more).
pub const NTU120_XSUB_TRAIN: [u16; 53] = [
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49, 50,
    52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95,
    97, 98, 100, 103,
];

/// Cross-view training cameras.
pub const XVIEW_TRAIN_CAMERAS: [u16; 2] = [2, 3];

/// Last setup id of NTU-60 (NTU-120 adds setups 18..=32).
pub const NTU60_LAST_SETUP: u16 = 17;

/// Numbers per body-info line and per joint line.
const BODY_FIELDS: usize = 10;
const JOINT_FIELDS: usize = 12;

/// Reads and parses one `.skeleton` file.
pub fn parse_skeleton_file(path: &Path) -> Result<RawSeq> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_skeleton_bytes(&bytes, path)
}

/// Parses the text of a `.skeleton` file; `path` only names the file in errors.
///
/// Errors (each naming `path` and a 1-based line): a truncated file, a joint count other
/// than 25, a field count other than 10 (body line) or 12 (joint line), a field that is
/// not a number where one is read, and a file with no body in any frame.
pub fn parse_skeleton_bytes(bytes: &[u8], path: &Path) -> Result<RawSeq> {
    let mut lines = Lines::new(bytes);
    let (line, text) = lines
        .next_nonblank()
        .ok_or_else(|| DataError::parse(path, 1, "empty file: expected the frame count"))?;
    let frames = parse_count(text, path, line, "frame count")?;
    // Every frame needs at least a body-count line: a larger count cannot be honest, and
    // checking it bounds the allocation below by the file size.
    if frames > bytes.len() / 2 {
        return Err(DataError::parse(
            path,
            line,
            format!(
                "frame count {frames} is impossible for a file of {} bytes",
                bytes.len()
            ),
        ));
    }
    let mut data = vec![0.0f32; CHANNELS * frames * NTU_JOINTS * PERSONS];
    let plane = frames * NTU_JOINTS * PERSONS;
    let mut any_body = false;

    for t in 0..frames {
        let what = || format!("the body count of frame {} of {frames}", t + 1);
        let (line, text) = lines.expect(path, what)?;
        let bodies = parse_count(text, path, line, "body count")?;
        any_body |= bodies > 0;
        for b in 0..bodies {
            let what = || format!("body {} of frame {}: body info line", b + 1, t + 1);
            let (line, text) = lines.expect(path, what)?;
            check_field_count(text, BODY_FIELDS, path, line, "body info")?;
            let what = || format!("body {} of frame {}: joint count", b + 1, t + 1);
            let (line, text) = lines.expect(path, what)?;
            let joints = parse_count(text, path, line, "joint count")?;
            if joints != NTU_JOINTS {
                return Err(DataError::parse(
                    path,
                    line,
                    format!("joint count {joints}, expected {NTU_JOINTS}"),
                ));
            }
            for v in 0..NTU_JOINTS {
                let what = || format!("joint {} of body {} of frame {}", v + 1, b + 1, t + 1);
                let (line, text) = lines.expect(path, what)?;
                let xyz = parse_joint_line(text, path, line)?;
                if b < PERSONS {
                    let base = (t * NTU_JOINTS + v) * PERSONS + b;
                    for (c, value) in xyz.into_iter().enumerate() {
                        data[c * plane + base] = value;
                    }
                }
            }
        }
    }
    if !any_body {
        return Err(DataError::parse(
            path,
            1,
            format!("no body in any of the {frames} frames"),
        ));
    }
    if let Some((line, _)) = lines.next_nonblank() {
        return Err(DataError::parse(
            path,
            line,
            format!("content after the last of the {frames} frames the header announces (wrong frame count?)"),
        ));
    }
    Ok(RawSeq { frames, data })
}

/// Parses a joint line: 12 numbers, of which x, y, z are returned.
fn parse_joint_line(text: &[u8], path: &Path, line: usize) -> Result<[f32; 3]> {
    let mut xyz = [0.0f32; 3];
    let mut count = 0;
    for field in fields(text) {
        if count < 3 {
            xyz[count] = parse_f32(field).ok_or_else(|| not_a_number(field, path, line))?;
        }
        count += 1;
    }
    if count != JOINT_FIELDS {
        return Err(DataError::parse(
            path,
            line,
            format!("joint line has {count} fields, expected {JOINT_FIELDS}"),
        ));
    }
    Ok(xyz)
}

fn check_field_count(text: &[u8], want: usize, path: &Path, line: usize, what: &str) -> Result<()> {
    let count = fields(text).count();
    if count == want {
        Ok(())
    } else {
        Err(DataError::parse(
            path,
            line,
            format!("{what} line has {count} fields, expected {want}"),
        ))
    }
}

/// Parses a line holding exactly one non-negative integer.
fn parse_count(text: &[u8], path: &Path, line: usize, what: &str) -> Result<usize> {
    let mut it = fields(text);
    let field = it.next().unwrap_or_default();
    let value = parse_usize(field).ok_or_else(|| {
        DataError::parse(
            path,
            line,
            format!("{what}: expected an integer, found {:?}", lossy(field)),
        )
    })?;
    if it.next().is_some() {
        return Err(DataError::parse(
            path,
            line,
            format!("{what}: expected a single integer on the line"),
        ));
    }
    Ok(value)
}

pub(crate) fn not_a_number(field: &[u8], path: &Path, line: usize) -> DataError {
    let std_float = std::str::from_utf8(field).ok().map(str::parse::<f64>);
    if let Some(Ok(_)) = std_float {
        return DataError::parse(
            path,
            line,
            format!("not a finite float32 number: {:?}", lossy(field)),
        );
    }
    DataError::parse(path, line, format!("not a number: {:?}", lossy(field)))
}

fn lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(&field[..field.len().min(40)]).into_owned()
}

/// Line cursor over a byte buffer that keeps 1-based line numbers.
pub(crate) struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            line: 0,
        }
    }

    /// The next line (without its `\n` / `\r\n`) and its 1-based number.
    pub(crate) fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n');
        let mut text = &rest[..end.unwrap_or(rest.len())];
        self.pos += end.map_or(rest.len(), |e| e + 1);
        self.line += 1;
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        Some((self.line, text))
    }

    /// The next line that holds something other than whitespace.
    pub(crate) fn next_nonblank(&mut self) -> Option<(usize, &'a [u8])> {
        loop {
            let (line, text) = self.next_line()?;
            if text.iter().any(|b| !b.is_ascii_whitespace()) {
                return Some((line, text));
            }
        }
    }

    /// The next non-blank line, or a "truncated" error that says what was expected.
    fn expect(&mut self, path: &Path, what: impl FnOnce() -> String) -> Result<(usize, &'a [u8])> {
        self.next_nonblank().ok_or_else(|| {
            DataError::parse(
                path,
                self.line + 1,
                format!("truncated file: end of file where {} was expected", what()),
            )
        })
    }
}

/// Whitespace-separated fields of a line.
pub(crate) fn fields(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

fn parse_usize(field: &[u8]) -> Option<usize> {
    if field.is_empty() || field.len() > 18 {
        return None;
    }
    field.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

/// Parses a decimal float (`0.2181153`, `-1.4e-05`, `3`, `.5`) as `f64` rounded to `f32`,
/// the value Python's `float()` stored into a float32 array gives. `None` for a value
/// that overflows `f32` (`1e39`): nothing non-finite enters a store.
pub(crate) fn parse_f32(field: &[u8]) -> Option<f32> {
    parse_f64(field).map(|v| v as f32).filter(|v| v.is_finite())
}

/// Exact powers of ten representable in `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Decimal float parser. Numbers with at most 2^53 as mantissa and a decimal exponent
/// within +-22 take Clinger's fast path (one exact multiply or divide, so correctly
/// rounded); anything else falls back to the standard library on the same bytes.
pub(crate) fn parse_f64(field: &[u8]) -> Option<f64> {
    let (negative, digits) = match field.first()? {
        b'-' => (true, &field[1..]),
        b'+' => (false, &field[1..]),
        _ => (false, field),
    };
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut exp10: i64 = 0;
    let mut seen_digit = false;
    let mut exact = true;
    while i < digits.len() && digits[i].is_ascii_digit() {
        seen_digit = true;
        if !push_digit(&mut mantissa, digits[i] - b'0') {
            exact = false;
        }
        i += 1;
    }
    if i < digits.len() && digits[i] == b'.' {
        i += 1;
        while i < digits.len() && digits[i].is_ascii_digit() {
            seen_digit = true;
            if push_digit(&mut mantissa, digits[i] - b'0') {
                exp10 -= 1;
            } else {
                exact = false;
            }
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    if i < digits.len() && (digits[i] == b'e' || digits[i] == b'E') {
        i += 1;
        let negative_exp = match digits.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i64 = 0;
        while i < digits.len() && digits[i].is_ascii_digit() {
            e = (e * 10 + i64::from(digits[i] - b'0')).min(100_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        exp10 += if negative_exp { -e } else { e };
    }
    if i != digits.len() {
        return None;
    }
    let value = if exact && mantissa <= (1u64 << 53) && exp10.unsigned_abs() <= 22 {
        // `exp10` is within +-22 here, so the cast and index are in range.
        let m = mantissa as f64;
        let p = POW10[exp10.unsigned_abs() as usize];
        if exp10 < 0 {
            m / p
        } else {
            m * p
        }
    } else {
        // Rare: long mantissas or huge exponents. The grammar was checked above, so the
        // standard parser sees only a plain decimal number.
        std::str::from_utf8(digits).ok()?.parse::<f64>().ok()?
    };
    // `1e400` parses to inf: refused like the tokens `inf` and `nan`.
    value
        .is_finite()
        .then_some(if negative { -value } else { value })
}

/// Appends a decimal digit; false (and `mantissa` unchanged) on overflow.
fn push_digit(mantissa: &mut u64, d: u8) -> bool {
    match mantissa
        .checked_mul(10)
        .and_then(|m| m.checked_add(u64::from(d)))
    {
        Some(m) => {
            *mantissa = m;
            true
        }
        None => false,
    }
}

/// The five ids of an NTU file name `SsssCcccPpppRrrrAaaa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtuName {
    pub setup: u16,
    pub camera: u16,
    pub performer: u16,
    pub replication: u16,
    pub action: u16,
}

impl NtuName {
    /// Parses a file stem such as `S001C001P001R001A001` (a trailing `.skeleton` is
    /// accepted). Every id must be three digits and at least 1.
    pub fn parse(stem: &str) -> Result<Self> {
        let stem = stem.strip_suffix(".skeleton").unwrap_or(stem);
        let bad = |msg: &str| {
            DataError::format(
                Path::new(stem),
                format!("not an NTU sample name SsssCcccPpppRrrrAaaa: {msg}"),
            )
        };
        let bytes = stem.as_bytes();
        if bytes.len() != 20 {
            return Err(bad(&format!("{} characters, expected 20", bytes.len())));
        }
        let mut ids = [0u16; 5];
        for (k, (letter, id)) in b"SCPRA".iter().zip(ids.iter_mut()).enumerate() {
            let group = &bytes[4 * k..4 * k + 4];
            if group[0] != *letter {
                return Err(bad(&format!(
                    "expected '{}' at position {}",
                    *letter as char,
                    4 * k + 1
                )));
            }
            let value = parse_usize(&group[1..]).ok_or_else(|| {
                bad(&format!(
                    "'{}' is not followed by 3 digits",
                    *letter as char
                ))
            })?;
            if value == 0 {
                return Err(bad(&format!("id {} is 0", *letter as char)));
            }
            // Three digits: at most 999.
            *id = value as u16;
        }
        let [setup, camera, performer, replication, action] = ids;
        Ok(Self {
            setup,
            camera,
            performer,
            replication,
            action,
        })
    }

    /// Parses the stem of `path`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| DataError::format(path, "file name is not valid UTF-8"))?;
        Self::parse(stem).map_err(|e| match e {
            DataError::Format { msg, .. } => DataError::format(path, msg),
            other => other,
        })
    }

    /// The class label: action id - 1.
    pub fn label(&self) -> i64 {
        i64::from(self.action) - 1
    }

    /// Whether this sample is in the training split of `benchmark`.
    pub fn is_train(&self, dataset: NtuDataset, benchmark: NtuBenchmark) -> bool {
        match benchmark {
            NtuBenchmark::XSub => match dataset {
                NtuDataset::Ntu60 => NTU60_XSUB_TRAIN.contains(&self.performer),
                NtuDataset::Ntu120 => NTU120_XSUB_TRAIN.contains(&self.performer),
            },
            NtuBenchmark::XView => XVIEW_TRAIN_CAMERAS.contains(&self.camera),
            NtuBenchmark::XSet => self.setup % 2 == 0,
        }
    }
}

impl fmt::Display for NtuName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{:03}C{:03}P{:03}R{:03}A{:03}",
            self.setup, self.camera, self.performer, self.replication, self.action
        )
    }
}

/// NTU RGB+D 60 or 120.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NtuDataset {
    Ntu60,
    Ntu120,
}

impl NtuDataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ntu60 => "ntu60",
            Self::Ntu120 => "ntu120",
        }
    }

    pub fn num_classes(self) -> usize {
        match self {
            Self::Ntu60 => 60,
            Self::Ntu120 => 120,
        }
    }

    /// Whether the sample belongs to this dataset (NTU-60: setups 1..=17).
    pub fn contains(self, name: &NtuName) -> bool {
        match self {
            Self::Ntu60 => name.setup <= NTU60_LAST_SETUP,
            Self::Ntu120 => true,
        }
    }
}

impl FromStr for NtuDataset {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ntu60" | "ntu-60" => Ok(Self::Ntu60),
            "ntu120" | "ntu-120" => Ok(Self::Ntu120),
            _ => Err(DataError::Invalid(format!(
                "unknown NTU dataset {s:?} (expected ntu60 or ntu120)"
            ))),
        }
    }
}

/// The NTU evaluation benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NtuBenchmark {
    /// Cross-subject: training performers from a fixed list.
    XSub,
    /// Cross-view (NTU-60): cameras 2 and 3 train, camera 1 tests.
    XView,
    /// Cross-setup (NTU-120): even setup ids train.
    XSet,
}

impl NtuBenchmark {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XSub => "xsub",
            Self::XView => "xview",
            Self::XSet => "xset",
        }
    }

    /// Checks that the benchmark is an official one of `dataset` (NTU-60: xsub, xview;
    /// NTU-120: xsub, xset).
    pub fn check_for(self, dataset: NtuDataset) -> Result<()> {
        match (dataset, self) {
            (NtuDataset::Ntu60, Self::XSet) | (NtuDataset::Ntu120, Self::XView) => {
                Err(DataError::Invalid(format!(
                    "{} is not a benchmark of {} (ntu60: xsub, xview; ntu120: xsub, xset)",
                    self.as_str(),
                    dataset.as_str()
                )))
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for NtuBenchmark {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "xsub" => Ok(Self::XSub),
            "xview" => Ok(Self::XView),
            "xset" => Ok(Self::XSet),
            _ => Err(DataError::Invalid(format!(
                "unknown NTU benchmark {s:?} (expected xsub, xview or xset)"
            ))),
        }
    }
}
