//! `prepare`: raw datasets to the HDF5 store (AimCLR's `ntu_gendata` + frame-50
//! preprocessing in one pass, method file section 6).
//!
//! - [`prepare_ntu`]: a directory of NTU `.skeleton` files, filtered by dataset and the
//!   official ignore list, parsed and normalised in parallel on the current rayon pool,
//!   split by benchmark, stored in name order with label `action - 1`.
//! - [`prepare_pku`]: PKU-MMD skeleton and label files plus a split file.
//! - [`prepare_npy`]: AimCLR's already-normalised `*_position.npy` + label pickle.
//!
//! Files are processed in blocks and streamed into a [`StoreWriter`], so memory stays at
//! one block of samples; the store appears only when complete.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::error::{DataError, Result};
use super::normalize::frame50;
use super::npy::{read_label_pickle, read_npy_i64, NpyReader};
use super::ntu::{parse_skeleton_file, NtuBenchmark, NtuDataset, NtuName};
use super::pku::{
    center_crop, cut_instance, parse_pku_skeleton_file, read_pku_labels, read_pku_split,
    PKU_CLASSES, PKU_MAX_FRAMES,
};
use super::store::{StoreMeta, StoreWriter};
use super::{RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

/// Files parsed in parallel before their samples are appended to the store.
const BLOCK: usize = 512;
/// PKU-MMD videos per block (a video holds about 20 instances).
const PKU_BLOCK: usize = 32;

/// Options of [`prepare_ntu`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareNtuOpts {
    /// Directory of `.skeleton` files (not searched recursively).
    pub raw: PathBuf,
    /// Store to write.
    pub out: PathBuf,
    /// `xsub` or `xview` (NTU-60), `xsub` or `xset` (NTU-120).
    pub benchmark: String,
    /// `ntu60` (setups 1..=17) or `ntu120`.
    pub dataset: String,
    /// File of sample names to leave out, one per line, with or without `.skeleton`.
    pub ignore: Option<PathBuf>,
    /// Frames after normalisation (AimCLR: 50).
    pub frames: usize,
    /// Skip unreadable files (listed in the report) instead of failing.
    pub skip_bad: bool,
    /// Report progress on stderr.
    pub progress: bool,
}

/// Options of [`prepare_pku`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparePkuOpts {
    /// Directory of skeleton files `<video>.txt`.
    pub skeletons: PathBuf,
    /// Directory of label files `<video>.txt`.
    pub labels: PathBuf,
    /// Split file (`cross-subject.txt`, `cross-view.txt`).
    pub split: PathBuf,
    pub out: PathBuf,
    /// `1`/`2` (or `pku1`/`pku2`): PKU-MMD part, recorded as dataset `pku1`/`pku2`.
    pub part: String,
    pub frames: usize,
    pub skip_bad: bool,
    pub progress: bool,
}

/// Options of [`prepare_npy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareNpyOpts {
    /// `(N, 3, T, 25, M)` float array.
    pub train_data: PathBuf,
    /// `(names, labels)` pickle, or an integer `.npy` of labels.
    pub train_labels: PathBuf,
    pub test_data: PathBuf,
    pub test_labels: PathBuf,
    pub out: PathBuf,
    /// `ntu60`, `ntu120`, `pku1`, ... (sets `num_classes`; others use max label + 1).
    pub dataset: String,
    pub benchmark: String,
}

/// What a `prepare` run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareReport {
    /// Input files (or videos, or array rows) considered after filtering.
    pub files: usize,
    /// Of those, read successfully.
    pub parsed: usize,
    /// Left out by the dataset filter or the ignore list.
    pub ignored: usize,
    /// Unreadable inputs skipped under `skip_bad`: (name, reason).
    pub skipped: Vec<(String, String)>,
    pub train: usize,
    pub test: usize,
    pub seconds: f64,
    /// `files / seconds`.
    pub files_per_sec: f64,
}

impl PrepareReport {
    fn finish(mut self, start: Instant) -> Self {
        self.seconds = start.elapsed().as_secs_f64();
        self.files_per_sec = if self.seconds > 0.0 {
            self.files as f64 / self.seconds
        } else {
            0.0
        };
        self
    }
}

/// One normalised sample on its way to the store.
struct Sample {
    train: bool,
    name: String,
    label: i64,
    x: Vec<f32>,
}

/// Appends samples to the writer in the given order, grouped per split.
fn append_samples(writer: &mut StoreWriter, samples: &[Sample], sample_len: usize) -> Result<()> {
    for (split, train) in [("train", true), ("test", false)] {
        let part: Vec<&Sample> = samples.iter().filter(|s| s.train == train).collect();
        if part.is_empty() {
            continue;
        }
        let mut x = Vec::with_capacity(part.len() * sample_len);
        for s in &part {
            x.extend_from_slice(&s.x);
        }
        let y: Vec<i64> = part.iter().map(|s| s.label).collect();
        let names: Vec<String> = part.iter().map(|s| s.name.clone()).collect();
        writer.append(split, &x, &y, &names)?;
    }
    Ok(())
}

/// Converts a directory of NTU `.skeleton` files into a store (see the module docs).
pub fn prepare_ntu(opts: &PrepareNtuOpts) -> Result<PrepareReport> {
    let start = Instant::now();
    let dataset: NtuDataset = opts.dataset.parse()?;
    let benchmark: NtuBenchmark = opts.benchmark.parse()?;
    benchmark.check_for(dataset)?;
    check_frames(opts.frames)?;
    let ignore = match &opts.ignore {
        Some(p) => read_ignore_list(p)?,
        None => HashSet::new(),
    };

    let mut report = PrepareReport::default();
    let mut todo: Vec<(PathBuf, String, NtuName)> = Vec::new();
    for path in list_files(&opts.raw, "skeleton")? {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ignore.contains(&stem) {
            report.ignored += 1;
            continue;
        }
        match NtuName::from_path(&path) {
            Ok(name) if dataset.contains(&name) => todo.push((path, stem, name)),
            Ok(_) => report.ignored += 1,
            Err(e) if opts.skip_bad => report.skipped.push((stem, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    if todo.is_empty() && report.skipped.is_empty() {
        return Err(DataError::Invalid(format!(
            "no {} .skeleton files in {}",
            dataset.as_str(),
            opts.raw.display()
        )));
    }
    let num_classes = dataset.num_classes();
    if let Some((path, _, name)) = todo
        .iter()
        .find(|(_, _, n)| usize::from(n.action) > num_classes)
    {
        return Err(DataError::format(
            path,
            format!(
                "action {} outside the {num_classes} classes of {}",
                name.action,
                dataset.as_str()
            ),
        ));
    }
    report.files = todo.len() + report.skipped.len();

    let meta = StoreMeta::new(
        dataset.as_str(),
        benchmark.as_str(),
        num_classes,
        opts.frames,
        format!(
            "pstl prepare ntu: {} .skeleton files from {} (frame{} normalisation)",
            todo.len(),
            opts.raw.display(),
            opts.frames
        ),
    );
    let mut writer = StoreWriter::create(&opts.out, &meta)?;
    let mut progress = Progress::new("prepare ntu", todo.len(), opts.progress);
    for block in todo.chunks(BLOCK) {
        let results: Vec<Result<Vec<f32>>> = block
            .par_iter()
            .map(|(path, _, _)| parse_skeleton_file(path).map(|raw| frame50(&raw, opts.frames)))
            .collect();
        let mut samples = Vec::with_capacity(block.len());
        for ((_, stem, name), result) in block.iter().zip(results) {
            match result {
                Ok(x) => samples.push(Sample {
                    train: name.is_train(dataset, benchmark),
                    name: stem.clone(),
                    label: name.label(),
                    x,
                }),
                Err(e) if opts.skip_bad => report.skipped.push((stem.clone(), e.to_string())),
                Err(e) => return Err(e),
            }
        }
        report.parsed += samples.len();
        append_samples(&mut writer, &samples, meta.sample_len())?;
        progress.inc(block.len());
    }
    report.train = writer.len("train")?;
    report.test = writer.len("test")?;
    check_some_samples(&report, &opts.out)?;
    writer.finish()?;
    progress.finish();
    Ok(report.finish(start))
}

/// Converts PKU-MMD skeleton and label files into a store of action instances, named
/// `<video>_<k>` (k = 1-based instance number in the label file).
pub fn prepare_pku(opts: &PreparePkuOpts) -> Result<PrepareReport> {
    let start = Instant::now();
    check_frames(opts.frames)?;
    let part = match opts.part.to_ascii_lowercase().trim_start_matches("pku") {
        "1" | "i" => "pku1",
        "2" | "ii" => "pku2",
        other => {
            return Err(DataError::Invalid(format!(
                "unknown PKU-MMD part {other:?} (expected 1 or 2)"
            )))
        }
    };
    let split = read_pku_split(&opts.split)?;
    let stem = opts
        .split
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let benchmark = if stem.contains("subject") {
        "xsub".to_string()
    } else if stem.contains("view") {
        "xview".to_string()
    } else {
        stem
    };
    let mut videos: Vec<(String, bool)> = Vec::new();
    for (ids, train) in [(&split.train, true), (&split.test, false)] {
        let mut ids = ids.clone();
        ids.sort();
        ids.dedup();
        videos.extend(ids.into_iter().map(|id| (id, train)));
    }
    let mut report = PrepareReport {
        files: videos.len(),
        ..PrepareReport::default()
    };
    let meta = StoreMeta::new(
        part,
        benchmark,
        PKU_CLASSES,
        opts.frames,
        format!(
            "pstl prepare pku: {} videos from {} (labels {}, split {}, frame{} normalisation)",
            videos.len(),
            opts.skeletons.display(),
            opts.labels.display(),
            opts.split.display(),
            opts.frames
        ),
    );
    let mut writer = StoreWriter::create(&opts.out, &meta)?;
    let mut progress = Progress::new("prepare pku", videos.len(), opts.progress);
    let frames = opts.frames;
    for block in videos.chunks(PKU_BLOCK) {
        let results: Vec<Result<Vec<Sample>>> = block
            .par_iter()
            .map(|(id, train)| {
                let seq = parse_pku_skeleton_file(&opts.skeletons.join(format!("{id}.txt")))?;
                let label_path = opts.labels.join(format!("{id}.txt"));
                let actions = read_pku_labels(&label_path)?;
                actions
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        let cut = cut_instance(&seq, a.start, a.end).ok_or_else(|| {
                            DataError::parse(
                                &label_path,
                                k + 1,
                                format!(
                                    "instance [{}, {}] lies outside the video's {} frames",
                                    a.start, a.end, seq.frames
                                ),
                            )
                        })?;
                        Ok(Sample {
                            train: *train,
                            name: format!("{id}_{:03}", k + 1),
                            label: a.label(),
                            x: frame50(&center_crop(cut, PKU_MAX_FRAMES), frames),
                        })
                    })
                    .collect()
            })
            .collect();
        let mut samples = Vec::new();
        for ((id, _), result) in block.iter().zip(results) {
            match result {
                Ok(s) => {
                    report.parsed += 1;
                    samples.extend(s);
                }
                Err(e) if opts.skip_bad => report.skipped.push((id.clone(), e.to_string())),
                Err(e) => return Err(e),
            }
        }
        append_samples(&mut writer, &samples, meta.sample_len())?;
        progress.inc(block.len());
    }
    report.train = writer.len("train")?;
    report.test = writer.len("test")?;
    check_some_samples(&report, &opts.out)?;
    writer.finish()?;
    progress.finish();
    Ok(report.finish(start))
}

/// Imports AimCLR's preprocessed arrays (`(N, 3, T, 25, M)` `.npy` + label pickle).
pub fn prepare_npy(opts: &PrepareNpyOpts) -> Result<PrepareReport> {
    let start = Instant::now();
    let mut train = NpyReader::open(&opts.train_data)?;
    let mut test = NpyReader::open(&opts.test_data)?;
    let shape = check_sample_array(&train, &opts.train_data)?;
    let test_shape = check_sample_array(&test, &opts.test_data)?;
    if shape[2..] != test_shape[2..] {
        return Err(DataError::format(
            &opts.test_data,
            format!("sample shape {test_shape:?} differs from the training data's {shape:?}"),
        ));
    }
    let (train_names, train_y) = read_labels_any(&opts.train_labels, "train")?;
    let (test_names, test_y) = read_labels_any(&opts.test_labels, "test")?;
    for (n, y, path) in [
        (shape[0], &train_y, &opts.train_labels),
        (test_shape[0], &test_y, &opts.test_labels),
    ] {
        if y.len() != n {
            return Err(DataError::format(
                path,
                format!("{} labels for {n} samples", y.len()),
            ));
        }
    }
    let num_classes = match opts.dataset.to_ascii_lowercase().as_str() {
        "ntu60" => 60,
        "ntu120" => 120,
        "pku1" | "pku2" | "pku" | "pkummd" => PKU_CLASSES,
        _ => train_y
            .iter()
            .chain(&test_y)
            .copied()
            .max()
            .map_or(1, |m| m.max(0) as usize + 1),
    };
    let mut meta = StoreMeta::new(
        opts.dataset.clone(),
        opts.benchmark.clone(),
        num_classes,
        shape[2],
        format!(
            "pstl prepare npy: {} + {}",
            opts.train_data.display(),
            opts.test_data.display()
        ),
    );
    meta.persons = shape[4];
    let sample_len = meta.sample_len();
    let mut writer = StoreWriter::create(&opts.out, &meta)?;
    let mut buf = Vec::new();
    for (split, reader, names, y, file) in [
        (
            "train",
            &mut train,
            &train_names,
            &train_y,
            &opts.train_data,
        ),
        ("test", &mut test, &test_names, &test_y, &opts.test_data),
    ] {
        for (k, (names, y)) in names.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
            buf.resize(y.len() * sample_len, 0.0);
            reader.read_f32(&mut buf)?;
            // Nothing non-finite enters a store.
            if let Some(i) = buf.iter().position(|v| !v.is_finite()) {
                let i = i / sample_len;
                return Err(DataError::format(
                    file,
                    format!(
                        "sample {} ({}) holds a non-finite value",
                        k * BLOCK + i,
                        names[i]
                    ),
                ));
            }
            writer.append(split, &buf, y, names)?;
        }
    }
    let report = PrepareReport {
        files: shape[0] + test_shape[0],
        parsed: shape[0] + test_shape[0],
        train: writer.len("train")?,
        test: writer.len("test")?,
        ..PrepareReport::default()
    };
    writer.finish()?;
    Ok(report.finish(start))
}

/// Checks an `(N, 3, T, 25, M)` array header and returns its shape.
fn check_sample_array(reader: &NpyReader, path: &Path) -> Result<[usize; 5]> {
    let shape = &reader.header().shape;
    match shape.as_slice() {
        &[n, c, t, v, m] if c == CHANNELS && v == NTU_JOINTS && t > 0 && m > 0 => {
            Ok([n, c, t, v, m])
        }
        _ => Err(DataError::format(
            path,
            format!("array shape {shape:?}, expected (N, {CHANNELS}, T, {NTU_JOINTS}, M)"),
        )),
    }
}

/// Labels from a `(names, labels)` pickle, or from an integer `.npy` (names invented).
fn read_labels_any(path: &Path, split: &str) -> Result<(Vec<String>, Vec<i64>)> {
    if path.extension().is_some_and(|e| e == "npy") {
        let (y, _) = read_npy_i64(path)?;
        let names = (0..y.len()).map(|i| format!("{split}_{i:06}")).collect();
        Ok((names, y))
    } else {
        read_label_pickle(path)
    }
}

fn check_frames(frames: usize) -> Result<()> {
    if (1..=MAX_FRAMES).contains(&frames) {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "--frames {frames}: must be in 1..={MAX_FRAMES}"
        )))
    }
}

/// Largest `--frames` (NTU's longest sequence has 300).
pub const MAX_FRAMES: usize = 10_000;

/// An empty store is an error (every file skipped, or none in either split); the
/// temporary file is removed when the writer is dropped.
fn check_some_samples(report: &PrepareReport, out: &Path) -> Result<()> {
    if report.train + report.test > 0 {
        return Ok(());
    }
    let first = report
        .skipped
        .first()
        .map(|(f, why)| format!("; first: {f}: {why}"))
        .unwrap_or_default();
    Err(DataError::Invalid(format!(
        "no sample for {}: {} file(s) skipped{first}",
        out.display(),
        report.skipped.len()
    )))
}

/// Files `dir/*.ext`, sorted by name.
fn list_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == ext) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Sample names to leave out: one per line, `.skeleton` optional, `#` comments.
pub fn read_ignore_list(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.strip_suffix(".skeleton").unwrap_or(l).to_owned())
        .collect())
}

/// Writes `seq` as NTU `.skeleton` text with `bodies` bodies in every frame: body `b`
/// takes person slot `b % 2`. The fields other than x, y, z are plausible values
/// (depth/colour projections, a fixed orientation), so files have the real layout and
/// about the real size.
pub fn write_skeleton_text(seq: &RawSeq, bodies: usize) -> String {
    let t_len = seq.frames;
    let mut s = String::with_capacity(64 + t_len * (2 + bodies * (64 + NTU_JOINTS * 100)));
    let at = |c: usize, t: usize, v: usize, m: usize| {
        seq.data[((c * t_len + t) * NTU_JOINTS + v) * PERSONS + m]
    };
    // Writing to a String cannot fail.
    let _ = writeln!(s, "{t_len}");
    for t in 0..t_len {
        let _ = writeln!(s, "{bodies}");
        for b in 0..bodies {
            let _ = writeln!(
                s,
                "72057594037931{:03} 0 1 1 1 1 0 0.02764709 0.05745083 2",
                101 + b
            );
            let _ = writeln!(s, "{NTU_JOINTS}");
            for v in 0..NTU_JOINTS {
                let (x, y, z) = (
                    at(0, t, v, b % PERSONS),
                    at(1, t, v, b % PERSONS),
                    at(2, t, v, b % PERSONS),
                );
                let depth = if z.abs() > 1e-3 { z } else { 1.0 };
                let _ = writeln!(
                    s,
                    "{x} {y} {z} {:.3} {:.4} {:.3} {:.4} -0.2059419 0.05349901 0.9692109 -0.1239193 2",
                    256.0 + 365.0 * x / depth,
                    212.0 - 365.0 * y / depth,
                    960.0 + 1060.0 * x / depth,
                    540.0 - 1060.0 * y / depth,
                );
            }
        }
    }
    s
}

/// Progress of a preparation step ([`crate::progress`]); silent unless `enabled`.
struct Progress(Option<crate::progress::Progress>);

impl Progress {
    fn new(label: &str, total: usize, enabled: bool) -> Self {
        Self(enabled.then(|| crate::progress::Progress::with_plain_lines(label, total as u64)))
    }

    fn inc(&mut self, n: usize) {
        if let Some(p) = &mut self.0 {
            p.inc(n as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(p) = &mut self.0 {
            p.finish();
        }
    }
}
