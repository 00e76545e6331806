//! Experiment configuration: TOML files in `configs/` with the sections `run`, `data`,
//! `model`, `augment`, `pretrain` and `eval`, holding every hyperparameter of the
//! method with the authors' default; `--set section.key=value` overrides on top.
//! Unknown keys and bad values are errors that name the key and the file.

mod validate;

pub use validate::{check_weights, max_threads};

use crate::augment::AugmentConfig;
use crate::stream::Stream;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Configuration errors (they always name the file and, where known, the key).
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file (or `--set`).
        path: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// A value outside its allowed range.
    #[error("{path}: {key} = {value}: {why}")]
    Invalid {
        /// The config file.
        path: String,
        /// `section.key`.
        key: String,
        /// The offending value.
        value: String,
        /// What is allowed.
        why: String,
    },
}

/// `[run]`: naming, device, seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name: outputs go to `<dir>/<name>/`.
    pub name: String,
    /// Parent folder of run directories.
    pub dir: PathBuf,
    /// Global seed (the authors use 1).
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// CPU threads for libtorch and rayon (0 = all cores).
    pub threads: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "pstl".into(),
            dir: "runs".into(),
            seed: 1,
            device: "auto".into(),
            threads: 0,
        }
    }
}

/// `[data.synth]`: the built-in synthetic dataset created when `data.path` is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Create the synthetic store at `data.path` if it does not exist.
    pub create_if_missing: bool,
    /// Number of classes.
    pub classes: usize,
    /// Training samples per class.
    pub train_per_class: usize,
    /// Test samples per class.
    pub test_per_class: usize,
    /// Generator seed.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            create_if_missing: false,
            classes: 10,
            train_per_class: 200,
            test_per_class: 50,
            seed: 1,
        }
    }
}

/// `[data]`: the HDF5 store and how it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The HDF5 store (see `data/README.md`).
    pub path: PathBuf,
    /// Input stream: joint, motion or bone.
    pub stream: Stream,
    /// Batches prepared ahead of the trainer.
    pub prefetch: usize,
    /// Load a split into memory when it fits this budget (MiB); else read per batch.
    pub memory_budget_mb: usize,
    /// The synthetic dataset.
    pub synth: SynthConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: "data/ntu60_xsub.h5".into(),
            stream: Stream::Joint,
            prefetch: 4,
            memory_budget_mb: 8192,
            synth: SynthConfig::default(),
        }
    }
}

/// `[model]`: encoder and projector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Skeleton layout (`ntu25`).
    pub layout: String,
    /// Width of the first ST-GCN blocks (16 = the paper's 1/4 width).
    pub base_channels: i64,
    /// Feature dimension (256).
    pub feature_dim: i64,
    /// Dropout of blocks 1-9 (0.5).
    pub dropout: f64,
    /// Temporal kernel (9).
    pub temporal_kernel: i64,
    /// Trainable edge importance (true).
    pub edge_importance: bool,
    /// Barlow Twins projector width `D` (6144).
    pub projector_dim: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            layout: "ntu25".into(),
            base_channels: 16,
            feature_dim: 256,
            dropout: 0.5,
            temporal_kernel: 9,
            edge_importance: true,
            projector_dim: 6144,
        }
    }
}

/// Learning-rate schedule granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// lr set once per epoch (the authors' way).
    Epoch,
    /// lr set every step from the fractional epoch.
    Step,
}

/// `[pretrain]`: the PSTL objective and optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Epochs (150).
    pub epochs: usize,
    /// Batch size (128); the last partial batch is kept unless it holds one sample.
    pub batch_size: usize,
    /// Peak learning rate (5e-3).
    pub lr: f64,
    /// Adam weight decay, L2 as in `torch.optim.Adam` (1e-5).
    pub weight_decay: f64,
    /// Linear warm-up epochs (10).
    pub warmup_epochs: usize,
    /// `epoch` or `step`.
    pub schedule: Schedule,
    /// Barlow Twins off-diagonal weight (2e-4).
    pub lambda: f64,
    /// MATM: frames dropped for motion, and again at random (10).
    pub mask_frame: i64,
    /// CSM: joints drawn (8).
    pub mask_joint: usize,
    /// Checkpoint every N epochs (and always at the end).
    pub checkpoint_every: usize,
    /// Log a metrics row every N steps (and at the end of each epoch).
    pub log_every: usize,
    /// Also checkpoint every this many minutes within an epoch (0: only per epoch).
    pub checkpoint_minutes: f64,
    /// Checkpoints kept in the run directory, newest first (`checkpoint.safetensors`,
    /// `checkpoint.1.safetensors`, ...); resume takes the newest that verifies.
    pub keep_checkpoints: usize,
    /// Synchronise the encoder's batch norms over all ranks (false: per-rank
    /// statistics, as DDP). A single process then uses the same formula on its batch,
    /// so results do not depend on the number of ranks.
    pub sync_bn: bool,
    /// Data-parallel runs: seconds a collective may wait for a peer before the run fails.
    pub dist_timeout_s: f64,
    /// Data-parallel gradient averaging: `reducer` (DDP's engine, all-reducing buckets
    /// during backward) or `buckets` (pstl's earlier all-reduce after backward, kept to
    /// compare against).
    pub grad_sync: GradSync,
    /// Compute precision: `fp32`, `bf16` (fp32 master weights, fp32 loss) or `fp16`
    /// (CUDA only, with a loss scaler).
    pub precision: crate::model::Precision,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            epochs: 150,
            batch_size: 128,
            lr: 5e-3,
            weight_decay: 1e-5,
            warmup_epochs: 10,
            schedule: Schedule::Epoch,
            lambda: 2e-4,
            mask_frame: 10,
            mask_joint: 8,
            checkpoint_every: 10,
            log_every: 50,
            checkpoint_minutes: 0.0,
            keep_checkpoints: 2,
            sync_bn: false,
            dist_timeout_s: 300.0,
            grad_sync: GradSync::Reducer,
            precision: crate::model::Precision::Fp32,
        }
    }
}

/// How a data-parallel run averages gradients (`pretrain.grad_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradSync {
    /// libtorch's `c10d::Reducer`: buckets all-reduced as backward fills them.
    #[default]
    Reducer,
    /// One all-reduce per 25 MB bucket after backward ends.
    Buckets,
}

/// `[eval]`: downstream protocols (paper §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Linear probe epochs (150).
    pub linear_epochs: usize,
    /// Linear probe learning rate (0.01), cosine-annealed.
    pub linear_lr: f64,
    /// Fine-tune and semi-supervised epochs, and the cosine's length (150, the
    /// authors' `ft_epoch`).
    pub finetune_epochs: usize,
    /// Fine-tune learning rate (5e-3), cosine-annealed.
    pub finetune_lr: f64,
    /// Weight decay of the downstream optimisers.
    pub weight_decay: f64,
    /// Batch size (128).
    pub batch_size: usize,
    /// Neighbour counts of the KNN protocol.
    pub knn_k: Vec<usize>,
    /// Label fractions (percent) of the semi-supervised protocol.
    pub semi_percents: Vec<f64>,
    /// Take at least one labelled sample of every class even where
    /// `round(p * count)` (Python's half-to-even, as the authors) is 0. Off by default.
    pub semi_min_one: bool,
    /// Largest number of random joints removed by `robust`.
    pub robust_max_k: usize,
    /// Random draws per k in `robust`.
    pub robust_draws: usize,
    /// Extra `robust` rows, each several body parts removed at once, written as
    /// comma-separated part names (e.g. `"left_arm,right_leg"`), as the authors'
    /// `get_ignore_part` can.
    pub robust_part_sets: Vec<String>,
    /// Augment the fine-tune inputs with the pretraining augmentations.
    pub finetune_augment: bool,
    /// How the 3-stream ensemble combines scores: `logits` (raw logits, AimCLR's
    /// `ensemble_*.py`, the only public 3-stream script) or `softmax`.
    pub ensemble_mode: EnsembleMode,
    /// Weights of the 3-stream ensemble (joint, motion, bone); AimCLR's 0.6 / 0.4 / 0.6.
    pub ensemble_weights: Vec<f64>,
    /// Run the linear probe at the end of `pretrain` (and on a random-init encoder).
    pub after_pretrain: bool,
}

/// `eval.ensemble_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleMode {
    /// Weighted sum of raw logits (AimCLR's `ensemble_ntu_cs.py` and siblings).
    Logits,
    /// Weighted sum of per-stream softmax probabilities.
    Softmax,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            linear_epochs: 150,
            linear_lr: 0.01,
            finetune_epochs: 150,
            finetune_lr: 5e-3,
            weight_decay: 0.0,
            batch_size: 128,
            knn_k: vec![1, 10, 20],
            semi_percents: vec![1.0, 10.0],
            semi_min_one: false,
            robust_max_k: 10,
            robust_draws: 5,
            robust_part_sets: Vec::new(),
            finetune_augment: false,
            ensemble_mode: EnsembleMode::Logits,
            ensemble_weights: vec![0.6, 0.4, 0.6],
            after_pretrain: false,
        }
    }
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[run]`
    pub run: RunConfig,
    /// `[data]`
    pub data: DataConfig,
    /// `[model]`
    pub model: ModelConfig,
    /// `[augment]`
    pub augment: AugmentConfig,
    /// `[pretrain]`
    pub pretrain: PretrainConfig,
    /// `[eval]`
    pub eval: EvalConfig,
}

impl Config {
    /// Load `path` (or the defaults when `None`), apply `section.key=value` overrides,
    /// and validate. Relative `data.path` and `run.dir` stay relative to the working
    /// directory (the project root for `make`). An error names the file, or the
    /// `--set` that brought the bad value in.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let labelled: Vec<(String, String)> = overrides
            .iter()
            .map(|ov| (format!("--set {ov}"), ov.clone()))
            .collect();
        Config::load_labelled(path, &labelled)
    }

    /// [`Config::load`] with overrides given as `(label, section.key=value)`: errors
    /// about an override name its label (`--set k=v`, `--device cuda:9`, ...).
    pub fn load_labelled(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (label, mut value) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let v: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: one_line(&e.to_string()),
                })?;
                (p.display().to_string(), v)
            }
            None => ("<defaults>".to_string(), toml::Table::new()),
        };
        let parse = |value: &toml::Table, label: &str| -> Result<Config, ConfigError> {
            toml::Value::Table(value.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: label.to_string(),
                    message: one_line(&e.to_string()),
                })
        };
        // Each source is checked as it is added, so a type error names its source.
        let mut cfg = parse(&value, &label)?;
        // Which source set each key last (for range errors found after the merge).
        let mut origin: Vec<(String, String)> = Vec::new();
        for (ov_label, ov) in overrides {
            let key = apply_override(&mut value, ov).map_err(|message| ConfigError::Parse {
                path: ov_label.clone(),
                message,
            })?;
            cfg = parse(&value, ov_label)?;
            origin.push((key, ov_label.clone()));
        }
        cfg.validate(&label).map_err(|e| match e {
            ConfigError::Invalid {
                key, value, why, ..
            } => {
                let path = origin
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map_or(label.clone(), |(_, l)| l.clone());
                ConfigError::Invalid {
                    path,
                    key,
                    value,
                    why,
                }
            }
            other => other,
        })?;
        Ok(cfg)
    }

    /// The encoder hyperparameters.
    pub fn encoder(&self) -> crate::model::EncoderConfig {
        crate::model::EncoderConfig {
            in_channels: 3,
            base_channels: self.model.base_channels,
            feature_dim: self.model.feature_dim,
            dropout: self.model.dropout,
            temporal_kernel: self.model.temporal_kernel,
            edge_importance: self.model.edge_importance,
        }
    }

    /// The skeleton layout (validated in [`Config::validate`]).
    pub fn layout(&self) -> crate::model::Layout {
        crate::model::Layout::by_name(&self.model.layout)
            .unwrap_or_else(crate::model::Layout::ntu25)
    }

    /// The resolved config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Apply `section.key=value` (value parsed as TOML, else taken as a string); returns
/// the key.
fn apply_override(table: &mut toml::Table, ov: &str) -> Result<String, String> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| format!("expected section.key=value, got `{ov}`"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("expected section.key=value, got key `{key}`"));
    }
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` in `{key}` is not a section"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(key.to_string())
}
