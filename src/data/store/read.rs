//! Reading a store: [`Store::open`] checks every attribute and dataset once, then
//! samples are read by range or by index (one HDF5 read per run of consecutive rows).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5::types::{VarLenAscii, VarLenUnicode};
use hdf5::Dataset;
use ndarray::IxDyn;

use super::{
    h5, non_finite, rows_of, split_index, SplitData, StoreMeta, LAYOUT_NTU25, SPLITS, STORE_VERSION,
};
use crate::data::error::{DataError, Result};
use crate::data::{CHANNELS, NTU_JOINTS};

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
        let mut meta = read_meta(&file, path)?;
        let mut splits = Vec::with_capacity(SPLITS.len());
        for split in SPLITS {
            splits.push(open_split(&file, path, split, &mut meta)?);
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

/// The error for a bad `field` of the store at `path`.
fn bad_field(path: &Path, field: &str, msg: String) -> DataError {
    DataError::format(path, format!("{field}: {msg}"))
}

/// The root attributes, checked (`persons` stays 0 until [`open_split`] sets it).
fn read_meta(file: &hdf5::File, path: &Path) -> Result<StoreMeta> {
    let meta_int = |name: &str| -> Result<usize> {
        let v = read_int_attr(file, name).map_err(h5(path, name))?;
        usize::try_from(v).map_err(|_| bad_field(path, name, format!("negative value {v}")))
    };
    let meta_str = |name: &str| read_str_attr(file, name).map_err(h5(path, name));
    let meta = StoreMeta {
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
        return Err(bad_field(
            path,
            "version",
            format!("{} (this build reads {STORE_VERSION})", meta.version),
        ));
    }
    if meta.layout != LAYOUT_NTU25 {
        return Err(bad_field(
            path,
            "layout",
            format!("{:?} (expected {LAYOUT_NTU25:?})", meta.layout),
        ));
    }
    if meta.num_classes == 0 || meta.frames == 0 {
        return Err(bad_field(
            path,
            "num_classes/frames",
            "must be positive".into(),
        ));
    }
    Ok(meta)
}

/// Opens and checks the datasets of `split`: shapes and element types, labels within
/// `[0, num_classes)`. Sets `meta.persons` from `x`, which must agree across splits.
fn open_split(
    file: &hdf5::File,
    path: &Path,
    split: &str,
    meta: &mut StoreMeta,
) -> Result<ReadSplit> {
    let field = |n: &str| format!("{split}/{n}");
    let bad = |n: &str, msg: String| bad_field(path, &field(n), msg);
    let group = file.group(split).map_err(h5(path, split))?;
    let open = |name: &str| {
        group
            .dataset(name)
            .map_err(|e| DataError::hdf5(path, field(name), e))
    };
    let (x, y, name) = (open("x")?, open("y")?, open("name")?);
    let n = check_x_shape(&x, meta).map_err(|m| bad("x", m))?;
    check_kind(&x, false).map_err(|m| bad("x", m))?;
    check_kind(&y, true).map_err(|m| bad("y", m))?;
    for (ds, nm) in [(&y, "y"), (&name, "name")] {
        if ds.shape() != [n] {
            return Err(bad(
                nm,
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
            "y",
            format!("label {l} outside [0, {})", meta.num_classes),
        ));
    }
    Ok(ReadSplit {
        x,
        name,
        labels: labels.into(),
    })
}

/// Checks that `x` is `(N, C, T, V, M)` with the store's `T` and the `M` of the split
/// read before (if any); sets `meta.persons` and returns `N`.
fn check_x_shape(x: &Dataset, meta: &mut StoreMeta) -> std::result::Result<usize, String> {
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
        return Err(format!(
            "shape {shape:?}, expected (N, {CHANNELS}, {}, {NTU_JOINTS}, M) \
             with the same M in both splits",
            meta.frames
        ));
    }
    meta.persons = persons;
    Ok(n)
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
