//! Writing a store: [`StoreWriter`] lays out growable, compressed splits in a temporary
//! file, appends samples, and renames the file into place on [`StoreWriter::finish`].

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, Extent, Group, SimpleExtents};
use ndarray::{ArrayView, IxDyn};

use super::{
    h5, rows_of, split_index, SplitData, StoreMeta, DEFLATE_LEVEL, LAYOUT_NTU25, SPLITS,
    STORE_VERSION,
};
use crate::data::error::{DataError, Result};

/// Rows per chunk of the `y` and `name` datasets.
const LABEL_CHUNK: usize = 4096;

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
        write_meta(&file, meta, path)?;
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

/// The root attributes of `meta` (`persons` is implied by the shape of `x`).
fn write_meta(file: &hdf5::File, meta: &StoreMeta, path: &Path) -> Result<()> {
    for (name, value) in [
        ("dataset", &meta.dataset),
        ("benchmark", &meta.benchmark),
        ("layout", &meta.layout),
        ("source", &meta.source),
    ] {
        write_str_attr(file, name, value).map_err(h5(path, name))?;
    }
    for (name, value) in [
        ("num_classes", meta.num_classes as i64),
        ("frames", meta.frames as i64),
        ("version", i64::from(meta.version)),
    ] {
        write_int_attr(file, name, value).map_err(h5(path, name))?;
    }
    Ok(())
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
