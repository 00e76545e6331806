//! Data: raw skeleton parsers (NTU RGB+D, PKU-MMD, AimCLR `.npy`/`.pkl`), AimCLR's
//! frame-50 normalisation, the procedural synthetic dataset, and the HDF5 store with
//! its shuffled, prefetching batch reader (paper: data pipeline inherited from AimCLR).
//!
//! Nothing in this module depends on libtorch: samples are plain `f32` buffers in the
//! `(C=3, T, V=25, M)` layout, contiguous, index `((c * T + t) * V + v) * M + m`.

/// Number of coordinates per joint (x, y, z).
pub const CHANNELS: usize = 3;
/// Joints of the NTU 25-joint layout (`ntu25`).
pub const NTU_JOINTS: usize = 25;
/// Person slots per sample.
pub const PERSONS: usize = 2;
/// Frames after AimCLR's normalisation.
pub const FRAMES: usize = 50;

/// A raw (not yet normalised) sequence in `(C, T, V, M)` layout.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeq {
    /// Number of frames `T` stored in `data`.
    pub frames: usize,
    /// `3 * frames * 25 * 2` values, index `((c * T + t) * V + v) * M + m`.
    pub data: Vec<f32>,
}

pub mod classes;
pub mod error;
pub mod loader;
pub mod normalize;
pub mod npy;
pub mod ntu;
pub mod pku;
pub mod prepare;
pub mod store;
pub mod synth;

pub use error::DataError;
pub use loader::{Batch, BatchLoader, EpochIter, LoaderOptions};
pub use normalize::frame50;
pub use npy::{read_label_pickle, read_npy_f32, read_npy_i64, write_npy_f32};
pub use ntu::{parse_skeleton_bytes, parse_skeleton_file, NtuBenchmark, NtuDataset, NtuName};
pub use prepare::{
    prepare_npy, prepare_ntu, prepare_pku, write_skeleton_text, PrepareNpyOpts, PrepareNtuOpts,
    PreparePkuOpts, PrepareReport,
};
pub use store::{write_store, SplitData, Store, StoreMeta, StoreWriter};
