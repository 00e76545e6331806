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
//!
//! Writing ([`StoreWriter`], [`write_store`]) and reading ([`Store`]) live in their own
//! files; this one holds the format's constants, its metadata and what both share.

use std::ops::Range;
use std::path::Path;

use hdf5::{Hyperslab, Selection, SliceOrIndex};

use super::error::{DataError, Result};
use super::{CHANNELS, NTU_JOINTS};

mod read;
mod write;

pub use read::Store;
pub use write::{write_store, StoreWriter};

/// Format version written to and required from the `version` attribute.
pub const STORE_VERSION: u32 = 1;
/// The only joint layout stored so far.
pub const LAYOUT_NTU25: &str = "ntu25";
/// Split groups, in file order.
pub const SPLITS: [&str; 2] = ["train", "test"];

/// Deflate level of new stores (with the shuffle filter), chosen by
/// `cargo bench --bench store_filters` (docs/performance.md, "Data: store filters and loader").
pub const DEFLATE_LEVEL: u8 = 1;

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

/// The position of `split` in [`SPLITS`].
fn split_index(split: &str) -> Result<usize> {
    SPLITS.iter().position(|s| *s == split).ok_or_else(|| {
        DataError::Invalid(format!("unknown split {split:?} (expected train or test)"))
    })
}

/// Maps an HDF5 error to one naming the store and the field.
fn h5<'a>(path: &'a Path, field: &'a str) -> impl FnOnce(hdf5::Error) -> DataError + 'a {
    move |e| DataError::hdf5(path, field, e)
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
