//! The HDF5 sample store that `prepare` writes and training reads (the project's
//! replacement for AimCLR's `*_position.npy` + `*_label.pkl` pairs; format documented in
//! `data/README.md`).
//!
//! Layout: groups `train` and `test`, each with `x` f32 `(N, 3, T, 25, M)` chunked one
//! sample per chunk, `y` i64 `(N,)` and `name` variable-length UTF-8 `(N,)`; root
//! attributes `dataset`, `benchmark`, `num_classes`, `frames`, `layout` (`"ntu25"`),
//! `source` and `version` (1). Files are written under a temporary name in the target
//! directory and renamed into place when complete, so an error leaves no partial store.
//!
//! HDF5's own file locking (1.10.7+) is switched off: its `flock` is taken on a file
//! descriptor without close-on-exec, so any child process started meanwhile (a Python
//! check, a plotting tool) would inherit the lock and make the next open of the file fail
//! with EAGAIN. The store needs no lock: writers own a fresh temporary file and readers
//! only read.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5::types::{VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, Extent, Group, Hyperslab, Selection, SimpleExtents, SliceOrIndex};
use ndarray::{ArrayView, IxDyn};

use super::error::{DataError, Result};
use super::{CHANNELS, NTU_JOINTS};

/// Format version written to and required from the `version` attribute.
pub const STORE_VERSION: u32 = 1;
/// The only joint layout stored so far.
pub const LAYOUT_NTU25: &str = "ntu25";
/// Split groups, in file order.
pub const SPLITS: [&str; 2] = ["train", "test"];

/// Deflate level of new stores (with the shuffle filter), chosen by
/// `cargo bench --bench store_filters` (README, "Measured").
pub const DEFLATE_LEVEL: u8 = 1;

/// Rows per chunk of the `y` and `name` datasets.
const LABEL_CHUNK: usize = 4096;

/// What a store holds, from its root attributes (`persons` from the shape of `x`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreMeta {
    /// `ntu60`, `ntu120`, `pku1`, `pku2`, `synth`, ...
    pub dataset: String,
    /// `xsub`, `xview`, `xset`, ...
    pub benchmark: String,
    pub num_classes: usize,
    /// `T` of every sample.
    pub frames: usize,
    /// `M` of every sample.
    pub persons: usize,
    /// Joint layout; `ntu25`.
    pub layout: String,
    /// Free text: where the samples came from (raw directory, tool version, ...).
    pub source: String,
    /// Store format version; [`STORE_VERSION`].
    pub version: u32,
}

impl StoreMeta {
    /// Metadata for `ntu25` samples of 2 persons at the current format version.
    pub fn new(
        dataset: impl Into<String>,
        benchmark: impl Into<String>,
        num_classes: usize,
        frames: usize,
        source: impl Into<String>,
    ) -> Self {
        Self {
            dataset: dataset.into(),
            benchmark: benchmark.into(),
            num_classes,
            frames,
            persons: super::PERSONS,
            layout: LAYOUT_NTU25.to_string(),
            source: source.into(),
            version: STORE_VERSION,
        }
    }

    /// `(C, T, V, M)` of one sample.
    pub fn sample_shape(&self) -> [usize; 4] {
        [CHANNELS, self.frames, NTU_JOINTS, self.persons]
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape().iter().product()
    }
}

/// The samples of one split, contiguous: `x` is `(N, C, T, V, M)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitData {
    pub x: Vec<f32>,
    pub y: Vec<i64>,
    pub names: Vec<String>,
}

impl SplitData {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first sample holding a non-finite value: `(sample index, the value)`.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        let per = self.x.len() / self.y.len().max(1);
        let k = self.x.iter().position(|v| !v.is_finite())?;
        Some((k / per.max(1), self.x[k]))
    }
}

/// Writes a whole store at once (see [`StoreWriter`] to stream samples in).
pub fn write_store(
    path: &Path,
    meta: &StoreMeta,
    train: &SplitData,
    test: &SplitData,
) -> Result<()> {
    let mut writer = StoreWriter::create(path, meta)?;
    writer.append("train", &train.x, &train.y, &train.names)?;
    writer.append("test", &test.x, &test.y, &test.names)?;
    writer.finish()
}

fn split_index(split: &str) -> Result<usize> {
    SPLITS.iter().position(|s| *s == split).ok_or_else(|| {
        DataError::Invalid(format!("unknown split {split:?} (expected train or test)"))
    })
}

/// The three datasets of a split group.
#[derive(Debug, Clone)]
struct SplitSets {
    x: Dataset,
    y: Dataset,
    name: Dataset,
    len: usize,
}

/// Streams samples into a new store; the file appears at its path only on
/// [`StoreWriter::finish`]. Dropping an unfinished writer deletes the temporary file.
pub struct StoreWriter {
    splits: Vec<SplitSets>,
    file: Option<hdf5::File>,
    tmp: Option<tempfile::TempPath>,
    path: PathBuf,
    meta: StoreMeta,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Creates the temporary file next to `path` (creating missing parent directories)
    /// and lays out empty, growable splits, compressed with HDF5's shuffle + deflate
    /// filters at [`DEFLATE_LEVEL`].
    pub fn create(path: &Path, meta: &StoreMeta) -> Result<Self> {
        Self::create_with(path, meta, Some(DEFLATE_LEVEL))
    }

    /// [`StoreWriter::create`] with a chosen compression: `Some(level)` = shuffle +
    /// deflate at `level` (0-9) on `x` and `y`, `None` = no filters.
    pub fn create_with(path: &Path, meta: &StoreMeta, deflate: Option<u8>) -> Result<Self> {
        validate_meta(meta).map_err(|msg| DataError::format(path, msg))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        if path.file_name().is_none() {
            return Err(DataError::format(path, "store path has no file name"));
        }
        let tmp = crate::io::temp_beside(path)
            .map_err(|e| DataError::io(&dir, std::io::Error::other(format!("{e:#}"))))?
            .into_temp_path();
        let tmp_path = tmp.to_path_buf();
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&tmp_path)
            .map_err(h5(path, "create"))?;
        for (name, value) in [
            ("dataset", &meta.dataset),
            ("benchmark", &meta.benchmark),
            ("layout", &meta.layout),
            ("source", &meta.source),
        ] {
            write_str_attr(&file, name, value).map_err(h5(path, name))?;
        }
        for (name, value) in [
            ("num_classes", meta.num_classes as i64),
            ("frames", meta.frames as i64),
            ("version", i64::from(meta.version)),
        ] {
            write_int_attr(&file, name, value).map_err(h5(path, name))?;
        }
        let shape = meta.sample_shape();
        let mut splits = Vec::with_capacity(SPLITS.len());
        for split in SPLITS {
            let group = file.create_group(split).map_err(h5(path, split))?;
            splits.push(create_split(&group, shape, deflate).map_err(h5(path, split))?);
        }
        Ok(Self {
            splits,
            file: Some(file),
            tmp: Some(tmp),
            path: path.to_path_buf(),
            meta: meta.clone(),
        })
    }

    /// Appends samples to `split`: `x` holds `y.len()` samples of the store's shape,
    /// `names` one name each; labels must lie in `[0, num_classes)`.
    pub fn append(&mut self, split: &str, x: &[f32], y: &[i64], names: &[String]) -> Result<()> {
        let k = split_index(split)?;
        let n = y.len();
        let sample_len = self.meta.sample_len();
        let bad = |msg: String| DataError::format(&self.path, format!("{split}: {msg}"));
        if x.len() != n * sample_len {
            return Err(bad(format!(
                "x has {} values, expected {n} samples x {sample_len}",
                x.len()
            )));
        }
        if names.len() != n {
            return Err(bad(format!("{} names for {n} labels", names.len())));
        }
        if let Some(label) = y
            .iter()
            .find(|&&l| l < 0 || l as usize >= self.meta.num_classes)
        {
            return Err(bad(format!(
                "label {label} outside [0, {})",
                self.meta.num_classes
            )));
        }
        let names = names
            .iter()
            .map(|s| s.parse::<VarLenUnicode>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("sample name cannot be stored: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let sets = &mut self.splits[k];
        let (start, end) = (sets.len, sets.len + n);
        let [c, t, v, m] = self.meta.sample_shape();
        let view = ArrayView::from_shape(IxDyn(&[n, c, t, v, m]), x)
            .map_err(|e| DataError::Invalid(format!("x shape: {e}")))?;
        let (fx, fy, fname) = (
            format!("{split}/x"),
            format!("{split}/y"),
            format!("{split}/name"),
        );
        let path = self.path.as_path();
        sets.x.resize([end, c, t, v, m]).map_err(h5(path, &fx))?;
        sets.x
            .write_slice(view, rows_of(start..end, 5))
            .map_err(h5(path, &fx))?;
        sets.y.resize(end).map_err(h5(path, &fy))?;
        sets.y.write_slice(y, start..end).map_err(h5(path, &fy))?;
        sets.name.resize(end).map_err(h5(path, &fname))?;
        sets.name
            .write_slice(&names[..], start..end)
            .map_err(h5(path, &fname))?;
        sets.len = end;
        Ok(())
    }

    /// Samples written so far to `split`.
    pub fn len(&self, split: &str) -> Result<usize> {
        Ok(self.splits[split_index(split)?].len)
    }

    /// Closes the file and renames it to its final path (replacing an older store).
    pub fn finish(mut self) -> Result<()> {
        self.splits.clear();
        if let Some(file) = self.file.take() {
            file.close()
                .map_err(|e| DataError::hdf5(&self.path, "close", e))?;
        }
        if let Some(tmp) = self.tmp.take() {
            tmp.persist(&self.path)
                .map_err(|e| DataError::io(&self.path, e.error))?;
        }
        Ok(())
    }
}

/// Maps an HDF5 error to one naming the store and the field.
fn h5<'a>(path: &'a Path, field: &'a str) -> impl FnOnce(hdf5::Error) -> DataError + 'a {
    move |e| DataError::hdf5(path, field, e)
}

fn validate_meta(meta: &StoreMeta) -> std::result::Result<(), String> {
    if meta.layout != LAYOUT_NTU25 {
        return Err(format!(
            "layout {:?}: only {LAYOUT_NTU25:?} is supported",
            meta.layout
        ));
    }
    if meta.version != STORE_VERSION {
        return Err(format!(
            "version {}: only {STORE_VERSION} is supported",
            meta.version
        ));
    }
    if meta.frames == 0 || meta.persons == 0 || meta.num_classes == 0 {
        return Err("frames, persons and num_classes must be positive".into());
    }
    Ok(())
}

fn create_split(
    group: &Group,
    [c, t, v, m]: [usize; 4],
    deflate: Option<u8>,
) -> hdf5::Result<SplitSets> {
    let grow = |fixed: &[usize]| {
        let mut dims = vec![Extent::resizable(0)];
        dims.extend(fixed.iter().map(|&d| Extent::fixed(d)));
        SimpleExtents::from_vec(dims)
    };
    let (mut x, mut y) = (group.new_dataset::<f32>(), group.new_dataset::<i64>());
    if let Some(level) = deflate {
        x = x.shuffle().deflate(level);
        y = y.shuffle().deflate(level);
    }
    // Fletcher-32 last, over the stored bytes of every chunk (one sample of `x`), so
    // a flipped bit fails the checksum before anything is decompressed.
    let (x, y) = (x.fletcher32(), y.fletcher32());
    let x = x
        .chunk([1, c, t, v, m])
        .shape(grow(&[c, t, v, m]))
        .create("x")?;
    let y = y.chunk(LABEL_CHUNK).shape(grow(&[])).create("y")?;
    let name = group
        .new_dataset::<VarLenUnicode>()
        .chunk(LABEL_CHUNK)
        .shape(grow(&[]))
        .create("name")?;
    Ok(SplitSets { x, y, name, len: 0 })
}

fn write_str_attr(file: &hdf5::File, name: &str, value: &str) -> hdf5::Result<()> {
    let value: VarLenUnicode = value
        .parse()
        .map_err(|e| hdf5::Error::from(format!("attribute {name}: {e}")))?;
    file.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&value)
}

fn write_int_attr(file: &hdf5::File, name: &str, value: i64) -> hdf5::Result<()> {
    file.new_attr::<i64>().create(name)?.write_scalar(&value)
}

/// The datasets of a split opened for reading, with its labels cached.
#[derive(Debug, Clone)]
struct ReadSplit {
    x: Dataset,
    name: Dataset,
    labels: Arc<[i64]>,
}

/// A store opened for reading. Cheap to clone (HDF5 handles are reference counted) and
/// `Send`; the HDF5 library serialises calls internally. Labels are read (and checked)
/// once at open and kept in memory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    meta: StoreMeta,
    splits: Vec<ReadSplit>,
    // Kept last so the datasets close before the file handle.
    _file: hdf5::File,
}

impl Store {
    /// Opens and validates a store: every attribute and dataset present with the right
    /// type and shape, and labels within `[0, num_classes)`. Errors name the file and
    /// the field.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such store file"),
            ));
        }
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open(path)
            .map_err(h5(path, "open"))?;
        let bad = |field: &str, msg: String| DataError::format(path, format!("{field}: {msg}"));
        let meta_int = |name: &str| -> Result<usize> {
            let v = read_int_attr(&file, name).map_err(h5(path, name))?;
            usize::try_from(v).map_err(|_| bad(name, format!("negative value {v}")))
        };
        let meta_str = |name: &str| read_str_attr(&file, name).map_err(h5(path, name));
        let mut meta = StoreMeta {
            dataset: meta_str("dataset")?,
            benchmark: meta_str("benchmark")?,
            num_classes: meta_int("num_classes")?,
            frames: meta_int("frames")?,
            persons: 0,
            layout: meta_str("layout")?,
            source: meta_str("source")?,
            version: u32::try_from(meta_int("version")?).unwrap_or(u32::MAX),
        };
        if meta.version != STORE_VERSION {
            return Err(bad(
                "version",
                format!("{} (this build reads {STORE_VERSION})", meta.version),
            ));
        }
        if meta.layout != LAYOUT_NTU25 {
            return Err(bad(
                "layout",
                format!("{:?} (expected {LAYOUT_NTU25:?})", meta.layout),
            ));
        }
        if meta.num_classes == 0 || meta.frames == 0 {
            return Err(bad("num_classes/frames", "must be positive".into()));
        }

        let mut splits = Vec::with_capacity(SPLITS.len());
        for split in SPLITS {
            let field = |n: &str| format!("{split}/{n}");
            let group = file.group(split).map_err(h5(path, split))?;
            let open = |name: &str| {
                group
                    .dataset(name)
                    .map_err(|e| DataError::hdf5(path, field(name), e))
            };
            let (x, y, name) = (open("x")?, open("y")?, open("name")?);
            let shape = x.shape();
            let n = shape.first().copied().unwrap_or(0);
            let persons = shape.get(4).copied().unwrap_or(0);
            let ok = shape.len() == 5
                && shape[1] == CHANNELS
                && shape[2] == meta.frames
                && shape[3] == NTU_JOINTS
                && persons > 0
                && (meta.persons == 0 || meta.persons == persons);
            if !ok {
                return Err(bad(
                    &field("x"),
                    format!(
                        "shape {shape:?}, expected (N, {CHANNELS}, {}, {NTU_JOINTS}, M) \
                         with the same M in both splits",
                        meta.frames
                    ),
                ));
            }
            meta.persons = persons;
            check_kind(&x, false).map_err(|m| bad(&field("x"), m))?;
            check_kind(&y, true).map_err(|m| bad(&field("y"), m))?;
            for (ds, nm) in [(&y, "y"), (&name, "name")] {
                if ds.shape() != [n] {
                    return Err(bad(
                        &field(nm),
                        format!("shape {:?}, expected ({n},) to match x", ds.shape()),
                    ));
                }
            }
            let labels: Vec<i64> = y
                .read_raw()
                .map_err(|e| DataError::hdf5(path, field("y"), e))?;
            if let Some(l) = labels
                .iter()
                .find(|&&l| l < 0 || l as usize >= meta.num_classes)
            {
                return Err(bad(
                    &field("y"),
                    format!("label {l} outside [0, {})", meta.num_classes),
                ));
            }
            splits.push(ReadSplit {
                x,
                name,
                labels: labels.into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            meta,
            splits,
            _file: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Number of samples in `split` (`"train"` or `"test"`).
    pub fn len(&self, split: &str) -> Result<usize> {
        Ok(self.split(split)?.labels.len())
    }

    /// The labels of a split (kept in memory since `open`).
    pub fn labels(&self, split: &str) -> Result<&[i64]> {
        Ok(&self.split(split)?.labels)
    }

    fn split(&self, split: &str) -> Result<&ReadSplit> {
        Ok(&self.splits[split_index(split)?])
    }

    /// The whole split.
    pub fn read_split(&self, split: &str) -> Result<SplitData> {
        let n = self.len(split)?;
        self.read_range(split, 0, n)
    }

    /// Samples `start .. start + count`.
    pub fn read_range(&self, split: &str, start: usize, count: usize) -> Result<SplitData> {
        let n = self.len(split)?;
        let end = start
            .checked_add(count)
            .filter(|&e| e <= n)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "range {start}..{start}+{count} outside {split} of {n} samples"
                ))
            })?;
        if count == 0 {
            return Ok(SplitData::default());
        }
        Ok(SplitData {
            x: self.read_x_rows(split, start..end)?,
            y: self.split(split)?.labels[start..end].to_vec(),
            names: self.read_name_rows(split, start..end)?,
        })
    }

    /// Samples at `indices`, in that order (repeats allowed).
    pub fn read_indices(&self, split: &str, indices: &[usize]) -> Result<SplitData> {
        let (x, y) = self.read_xy_indices(split, indices)?;
        let mut names = vec![String::new(); indices.len()];
        for_each_run(indices, |rows, slots| {
            let first = rows.start;
            let got = self.read_name_rows(split, rows)?;
            for &slot in slots {
                names[slot].clone_from(&got[indices[slot] - first]);
            }
            Ok(())
        })?;
        Ok(SplitData { x, y, names })
    }

    /// `x` and `y` of the samples at `indices`, in that order. Reads go in ascending
    /// file order, one HDF5 read per run of consecutive indices.
    pub fn read_xy_indices(&self, split: &str, indices: &[usize]) -> Result<(Vec<f32>, Vec<i64>)> {
        let labels = &self.split(split)?.labels;
        if let Some(&bad) = indices.iter().find(|&&i| i >= labels.len()) {
            return Err(DataError::Invalid(format!(
                "index {bad} outside {split} of {} samples",
                labels.len()
            )));
        }
        let sample_len = self.meta.sample_len();
        let mut x = vec![0.0f32; indices.len() * sample_len];
        for_each_run(indices, |rows, slots| {
            let first = rows.start;
            let got = self.read_x_rows(split, rows)?;
            for &slot in slots {
                let row = indices[slot] - first;
                x[slot * sample_len..(slot + 1) * sample_len]
                    .copy_from_slice(&got[row * sample_len..(row + 1) * sample_len]);
            }
            Ok(())
        })?;
        let y = indices.iter().map(|&i| labels[i]).collect();
        Ok((x, y))
    }

    /// Checks that every value of `split` is finite, reading `CHECK_CHUNK` samples at a
    /// time (memory stays bounded). The error names the store, the split and the first
    /// bad sample by index and name.
    pub fn check_finite(&self, split: &str) -> Result<()> {
        const CHECK_CHUNK: usize = 256;
        let n = self.len(split)?;
        let mut start = 0;
        while start < n {
            let count = CHECK_CHUNK.min(n - start);
            let chunk = SplitData {
                x: self.read_x_rows(split, start..start + count)?,
                y: vec![0; count],
                names: Vec::new(),
            };
            if let Some((i, v)) = chunk.first_non_finite() {
                let i = start + i;
                let name = self
                    .read_name_rows(split, i..i + 1)?
                    .pop()
                    .unwrap_or_default();
                return Err(non_finite(&self.path, split, i, &name, v));
            }
            start += count;
        }
        Ok(())
    }

    fn read_x_rows(&self, split: &str, rows: Range<usize>) -> Result<Vec<f32>> {
        let arr = match self
            .split(split)?
            .x
            .read_slice::<f32, _, IxDyn>(rows_of(rows.clone(), 5))
        {
            Ok(arr) => arr,
            Err(e) => return Err(self.read_error(split, rows, e)),
        };
        let (data, offset) = arr.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        Ok(data)
    }

    /// The error of a failed read of `rows`: a Fletcher-32 mismatch names the first
    /// corrupt sample (rows re-read one at a time to find it).
    fn read_error(&self, split: &str, rows: Range<usize>, e: hdf5::Error) -> DataError {
        if !format!("{e:?}").to_lowercase().contains("fletcher32") {
            return DataError::hdf5(&self.path, format!("{split}/x"), e);
        }
        let x = match self.split(split) {
            Ok(sets) => &sets.x,
            Err(e) => return e,
        };
        let bad = rows
            .clone()
            .find(|&i| x.read_slice::<f32, _, IxDyn>(rows_of(i..i + 1, 5)).is_err())
            .unwrap_or(rows.start);
        let name = self.read_name_rows(split, bad..bad + 1).ok();
        let name = name.and_then(|mut n| n.pop()).unwrap_or_default();
        DataError::format(
            &self.path,
            format!(
                "{split}: sample {bad} ({name}) fails its Fletcher-32 checksum: the store is \
                 corrupt; write it again with `pstl prepare` or `pstl synth`"
            ),
        )
    }

    fn read_name_rows(&self, split: &str, rows: Range<usize>) -> Result<Vec<String>> {
        let arr = self
            .split(split)?
            .name
            .read_slice_1d::<VarLenUnicode, _>(rows)
            .map_err(h5(&self.path, &format!("{split}/name")))?;
        Ok(arr.iter().map(|s| s.as_str().to_owned()).collect())
    }
}

/// The error for a non-finite value in sample `index` (`name`) of `split`.
pub fn non_finite(path: &Path, split: &str, index: usize, name: &str, value: f32) -> DataError {
    DataError::format(
        path,
        format!(
            "{split}: sample {index} ({name}) holds a non-finite value ({value}); \
             fix or drop it (prepare --skip-bad) before training or evaluation"
        ),
    )
}

/// The selection of whole samples `rows` of an `ndim`-dimensional dataset.
fn rows_of(rows: Range<usize>, ndim: usize) -> Selection {
    let mut dims = vec![SliceOrIndex::from(rows)];
    dims.extend((1..ndim).map(|_| SliceOrIndex::from(..)));
    Hyperslab::from(dims).into()
}

/// Groups `indices` into runs of consecutive (or repeated) values in ascending order and
/// calls `f(rows, slots)` per run: `rows` is the file range to read, `slots` the
/// positions in `indices` that fall in it.
fn for_each_run(
    indices: &[usize],
    mut f: impl FnMut(Range<usize>, &[usize]) -> Result<()>,
) -> Result<()> {
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_by_key(|&k| indices[k]);
    let mut k = 0;
    while k < order.len() {
        let mut j = k + 1;
        while j < order.len() && indices[order[j]] <= indices[order[j - 1]] + 1 {
            j += 1;
        }
        f(indices[order[k]]..indices[order[j - 1]] + 1, &order[k..j])?;
        k = j;
    }
    Ok(())
}

/// Checks that a dataset holds floats (`integer == false`) or integers.
fn check_kind(ds: &Dataset, integer: bool) -> std::result::Result<(), String> {
    use hdf5::types::TypeDescriptor as T;
    let have = ds
        .dtype()
        .and_then(|d| d.to_descriptor())
        .map_err(|e| e.to_string())?;
    let ok = match have {
        T::Float(_) => !integer,
        T::Integer(_) | T::Unsigned(_) => integer,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let want = if integer { "integers" } else { "floats" };
        Err(format!("element type {have:?}, expected {want}"))
    }
}

fn read_int_attr(file: &hdf5::File, name: &str) -> hdf5::Result<i64> {
    file.attr(name)?.read_scalar::<i64>()
}

fn read_str_attr(file: &hdf5::File, name: &str) -> hdf5::Result<String> {
    let attr = file.attr(name)?;
    match attr.read_scalar::<VarLenUnicode>() {
        Ok(s) => Ok(s.as_str().to_owned()),
        // h5py writes `str` attributes as UTF-8, but other writers may use ASCII.
        Err(_) => Ok(attr.read_scalar::<VarLenAscii>()?.as_str().to_owned()),
    }
}
