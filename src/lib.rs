//! pstl: self-supervised skeleton action representations with PSTL (Zhou et al.,
//! "Self-supervised Action Representation Learning from Partial Spatio-Temporal
//! Skeleton Sequences", AAAI 2023) on libtorch.
//!
//! The modules mirror the pipeline: [`data`] (parsers, HDF5 store, synthetic set) →
//! [`augment`] / [`masking`] / [`stream`] (views) → [`model`] (ST-GCN, Barlow Twins) →
//! [`train`] (pretraining) → [`eval`] (downstream protocols) → [`export`] (TorchScript,
//! safetensors); [`report`] sets the results beside the paper's. [`config`] and [`cli`]
//! hold the experiment files and the command line.

pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod eval;
pub mod export;
pub mod io;
pub mod logging;
pub mod masking;
pub mod method;
pub mod model;
pub mod optim;
pub mod pickle;
pub mod plot;
pub mod preflight;
pub mod progress;
pub mod report;
pub mod rng;
pub mod rundir;
pub mod stream;
pub mod tensorboard;
pub mod torchpt;
pub mod train;
pub mod verify;
pub mod viz;
