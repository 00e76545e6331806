//! `prepare`: raw datasets to the HDF5 store (AimCLR's `ntu_gendata` + frame-50
//! preprocessing in one pass, method file section 6).
//!
//! - [`prepare_ntu`]: a directory of NTU `.skeleton` files, filtered by dataset and the
//!   official ignore list, parsed and normalised in parallel on the current rayon pool,
//!   split by benchmark, stored in name order with label `action - 1`.
//! - [`prepare_pku`]: PKU-MMD skeleton and label files plus a split file.
//! - [`prepare_npy`]: AimCLR's already-normalised `*_position.npy` + label pickle (its
//!   own file, as it parses nothing).
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
use super::ntu::{parse_skeleton_file, NtuBenchmark, NtuDataset, NtuName};
use super::pku::{
    center_crop, cut_instance, parse_pku_skeleton_file, read_pku_labels, read_pku_split, PkuSplit,
    PKU_CLASSES, PKU_MAX_FRAMES,
};
use super::store::{StoreMeta, StoreWriter};
use super::{RawSeq, NTU_JOINTS, PERSONS};

mod npy;

pub use npy::{prepare_npy, PrepareNpyOpts};

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

/// The store being written by a `prepare` run from raw files, with its report and
/// progress: inputs are parsed in blocks on the rayon pool and appended in input order.
struct Sink {
    writer: StoreWriter,
    sample_len: usize,
    report: PrepareReport,
    progress: Progress,
    skip_bad: bool,
}

impl Sink {
    /// Creates the store for `meta` at `out`, silent until [`Sink::show_progress`].
    fn create(out: &Path, meta: &StoreMeta, report: PrepareReport, skip_bad: bool) -> Result<Self> {
        Ok(Self {
            writer: StoreWriter::create(out, meta)?,
            sample_len: meta.sample_len(),
            report,
            progress: Progress(None),
            skip_bad,
        })
    }

    /// Reports progress over `total` inputs under `label` when `enabled`.
    fn show_progress(&mut self, label: &str, total: usize, enabled: bool) {
        self.progress = Progress::new(label, total, enabled);
    }

    /// Parses `inputs` in blocks of `block` with `parse` (one input to its samples) and
    /// appends each block. An input that fails is skipped under `skip_bad` (listed by
    /// `name`), else the error ends the run.
    fn add_blocks<T: Sync>(
        &mut self,
        inputs: &[T],
        block: usize,
        name: impl Fn(&T) -> &str,
        parse: impl Fn(&T) -> Result<Vec<Sample>> + Sync,
    ) -> Result<()> {
        for block in inputs.chunks(block) {
            let results: Vec<Result<Vec<Sample>>> = block.par_iter().map(&parse).collect();
            let mut samples = Vec::with_capacity(block.len());
            for (input, result) in block.iter().zip(results) {
                match result {
                    Ok(s) => {
                        self.report.parsed += 1;
                        samples.extend(s);
                    }
                    Err(e) if self.skip_bad => self
                        .report
                        .skipped
                        .push((name(input).to_owned(), e.to_string())),
                    Err(e) => return Err(e),
                }
            }
            append_samples(&mut self.writer, &samples, self.sample_len)?;
            self.progress.inc(block.len());
        }
        Ok(())
    }

    /// Counts the samples, refuses an empty store, and renames the store into place.
    fn finish(mut self, out: &Path, start: Instant) -> Result<PrepareReport> {
        self.report.train = self.writer.len("train")?;
        self.report.test = self.writer.len("test")?;
        check_some_samples(&self.report, out)?;
        self.writer.finish()?;
        self.progress.finish();
        Ok(self.report.finish(start))
    }
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
    let todo = select_ntu_files(opts, dataset, &ignore, &mut report)?;
    report.files = todo.len() + report.skipped.len();

    let meta = StoreMeta::new(
        dataset.as_str(),
        benchmark.as_str(),
        dataset.num_classes(),
        opts.frames,
        format!(
            "pstl prepare ntu: {} .skeleton files from {} (frame{} normalisation)",
            todo.len(),
            opts.raw.display(),
            opts.frames
        ),
    );
    let mut sink = Sink::create(&opts.out, &meta, report, opts.skip_bad)?;
    sink.show_progress("prepare ntu", todo.len(), opts.progress);
    sink.add_blocks(
        &todo,
        BLOCK,
        |(_, stem, _)| stem,
        |(path, stem, name)| {
            let x = frame50(&parse_skeleton_file(path)?, opts.frames);
            Ok(vec![Sample {
                train: name.is_train(dataset, benchmark),
                name: stem.clone(),
                label: name.label(),
                x,
            }])
        },
    )?;
    sink.finish(&opts.out, start)
}

/// The `.skeleton` files of `opts.raw` to convert, in name order, as (path, stem, name):
/// those of `dataset` not on the ignore list (the others are counted in `report`), with
/// actions within its classes. Unparsable names fail, or are skipped under `skip_bad`.
fn select_ntu_files(
    opts: &PrepareNtuOpts,
    dataset: NtuDataset,
    ignore: &HashSet<String>,
    report: &mut PrepareReport,
) -> Result<Vec<(PathBuf, String, NtuName)>> {
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
    Ok(todo)
}

/// Converts PKU-MMD skeleton and label files into a store of action instances, named
/// `<video>_<k>` (k = 1-based instance number in the label file).
pub fn prepare_pku(opts: &PreparePkuOpts) -> Result<PrepareReport> {
    let start = Instant::now();
    check_frames(opts.frames)?;
    let part = pku_part(&opts.part)?;
    let split = read_pku_split(&opts.split)?;
    let benchmark = pku_benchmark(&opts.split);
    let videos = pku_videos(&split);
    let report = PrepareReport {
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
    let mut sink = Sink::create(&opts.out, &meta, report, opts.skip_bad)?;
    sink.show_progress("prepare pku", videos.len(), opts.progress);
    sink.add_blocks(
        &videos,
        PKU_BLOCK,
        |(id, _)| id,
        |(id, train)| pku_instances(opts, id, *train),
    )?;
    sink.finish(&opts.out, start)
}

/// The dataset name of a PKU-MMD part: `1`/`2`, `I`/`II`, with or without `pku`.
fn pku_part(part: &str) -> Result<&'static str> {
    match part.to_ascii_lowercase().trim_start_matches("pku") {
        "1" | "i" => Ok("pku1"),
        "2" | "ii" => Ok("pku2"),
        other => Err(DataError::Invalid(format!(
            "unknown PKU-MMD part {other:?} (expected 1 or 2)"
        ))),
    }
}

/// The benchmark named by a split file: `xsub`, `xview`, or the file's stem.
fn pku_benchmark(split: &Path) -> String {
    let stem = split
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if stem.contains("subject") {
        "xsub".to_string()
    } else if stem.contains("view") {
        "xview".to_string()
    } else {
        stem
    }
}

/// The videos of a split, (id, in the training split), each split sorted and deduplicated,
/// training first.
fn pku_videos(split: &PkuSplit) -> Vec<(String, bool)> {
    let mut videos: Vec<(String, bool)> = Vec::new();
    for (ids, train) in [(&split.train, true), (&split.test, false)] {
        let mut ids = ids.clone();
        ids.sort();
        ids.dedup();
        videos.extend(ids.into_iter().map(|id| (id, train)));
    }
    videos
}

/// The normalised action instances of video `id`, cut from its skeleton file by its
/// label file.
fn pku_instances(opts: &PreparePkuOpts, id: &str, train: bool) -> Result<Vec<Sample>> {
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
                train,
                name: format!("{id}_{:03}", k + 1),
                label: a.label(),
                x: frame50(&center_crop(cut, PKU_MAX_FRAMES), opts.frames),
            })
        })
        .collect()
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
