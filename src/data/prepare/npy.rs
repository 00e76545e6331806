//! `prepare npy`: imports AimCLR's already-normalised arrays (`*_position.npy`, `(N, 3,
//! T, 25, M)`) and their label pickles (or integer `.npy` labels) into a store, a block
//! of samples at a time; nothing non-finite gets in.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{PrepareReport, BLOCK};
use crate::data::error::{DataError, Result};
use crate::data::npy::{read_label_pickle, read_npy_i64, NpyReader};
use crate::data::pku::PKU_CLASSES;
use crate::data::store::{StoreMeta, StoreWriter};
use crate::data::{CHANNELS, NTU_JOINTS};

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

/// Imports AimCLR's preprocessed arrays (`(N, 3, T, 25, M)` `.npy` + label pickle).
pub fn prepare_npy(opts: &PrepareNpyOpts) -> Result<PrepareReport> {
    let start = Instant::now();
    let [(mut train, shape), (mut test, test_shape)] = open_arrays(opts)?;
    let [(train_names, train_y), (test_names, test_y)] =
        read_labels(opts, [shape[0], test_shape[0]])?;
    let meta = store_meta(opts, shape, &train_y, &test_y);
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
        let labels = (&names[..], &y[..], file.as_path());
        copy_split(&mut writer, split, reader, labels, sample_len, &mut buf)?;
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

/// Opens the training and test arrays, each with its `(N, 3, T, 25, M)` shape, and
/// checks that their samples have the same shape.
fn open_arrays(opts: &PrepareNpyOpts) -> Result<[(NpyReader, [usize; 5]); 2]> {
    let train = NpyReader::open(&opts.train_data)?;
    let test = NpyReader::open(&opts.test_data)?;
    let shape = check_sample_array(&train, &opts.train_data)?;
    let test_shape = check_sample_array(&test, &opts.test_data)?;
    if shape[2..] != test_shape[2..] {
        return Err(DataError::format(
            &opts.test_data,
            format!("sample shape {test_shape:?} differs from the training data's {shape:?}"),
        ));
    }
    Ok([(train, shape), (test, test_shape)])
}

/// The (names, labels) of both splits, one label per sample of the arrays (`samples`).
fn read_labels(opts: &PrepareNpyOpts, samples: [usize; 2]) -> Result<[(Vec<String>, Vec<i64>); 2]> {
    let train = read_labels_any(&opts.train_labels, "train")?;
    let test = read_labels_any(&opts.test_labels, "test")?;
    for (n, (_, y), path) in [
        (samples[0], &train, &opts.train_labels),
        (samples[1], &test, &opts.test_labels),
    ] {
        if y.len() != n {
            return Err(DataError::format(
                path,
                format!("{} labels for {n} samples", y.len()),
            ));
        }
    }
    Ok([train, test])
}

/// The store's metadata: `T` and `M` from the training array's `shape`.
fn store_meta(
    opts: &PrepareNpyOpts,
    shape: [usize; 5],
    train_y: &[i64],
    test_y: &[i64],
) -> StoreMeta {
    let num_classes = num_classes(&opts.dataset, train_y, test_y);
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
    meta
}

/// `num_classes` of an imported dataset: known for NTU and PKU-MMD, else the largest
/// label + 1.
fn num_classes(dataset: &str, train_y: &[i64], test_y: &[i64]) -> usize {
    match dataset.to_ascii_lowercase().as_str() {
        "ntu60" => 60,
        "ntu120" => 120,
        "pku1" | "pku2" | "pku" | "pkummd" => PKU_CLASSES,
        _ => train_y
            .iter()
            .chain(test_y)
            .copied()
            .max()
            .map_or(1, |m| m.max(0) as usize + 1),
    }
}

/// Streams the samples of one split from `reader` into `split` of the store, [`BLOCK`]
/// at a time through `buf`, with their (`names`, `y`); `file` names the array in errors.
/// Nothing non-finite enters a store.
fn copy_split(
    writer: &mut StoreWriter,
    split: &str,
    reader: &mut NpyReader,
    (names, y, file): (&[String], &[i64], &Path),
    sample_len: usize,
    buf: &mut Vec<f32>,
) -> Result<()> {
    for (k, (names, y)) in names.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
        buf.resize(y.len() * sample_len, 0.0);
        reader.read_f32(buf)?;
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
        writer.append(split, buf, y, names)?;
    }
    Ok(())
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
