//! The pretraining state ([`Trainer`]): encoder, projector, Adam and the step counter;
//! one optimisation step (single-process, or one rank of a data-parallel run with its
//! gradient averaging), the learning-rate schedule, and the checkpoint written and read
//! for exact resume. The losses themselves are [`crate::method`].

use super::dp::DpStats;
use crate::checkpoint;
use crate::config::{Config, Schedule};
use crate::dist::sync_bn::SyncGuard;
use crate::dist::{ProcessGroup, Reducer};
use crate::method::{pstl_losses, StepLosses};
use crate::model::{Layout, LossScaler, Precision, Pstl};
use crate::optim::{warmup_cosine, Adam};
use crate::rng::{step_seed, PstlRng};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::{nn, Device, Tensor};

/// The pretraining state.
pub struct Trainer {
    /// Variables of encoder and projector.
    pub vs: nn::VarStore,
    /// The model.
    pub model: Pstl,
    /// Optimiser with its state.
    pub adam: Adam,
    /// The resolved config.
    pub cfg: Config,
    /// Skeleton layout.
    pub layout: Layout,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// Process group of a data-parallel run.
    pub pg: Option<Arc<ProcessGroup>>,
    /// Loss scaler of `precision = "fp16"`.
    pub scaler: Option<LossScaler>,
    /// Gradient averaging of a data-parallel run (DDP's Reducer, made on its first step).
    pub(super) reducer: Option<Reducer>,
    /// Communication figures of a data-parallel run.
    pub dp: DpStats,
}

impl Trainer {
    /// A fresh model on `device`, initialised from `run.seed`.
    pub fn new(cfg: &Config, device: Device) -> Self {
        if device.is_cuda() {
            // cuDNN picks the fastest algorithm per shape (the three views have three).
            tch::Cuda::cudnn_set_benchmark(true);
        }
        tch::manual_seed(cfg.run.seed as i64);
        let vs = nn::VarStore::new(device);
        let layout = cfg.layout();
        let mut model = Pstl::new(&vs.root(), &layout, &cfg.encoder(), cfg.model.projector_dim);
        model.set_precision(cfg.pretrain.precision);
        let scaler = (cfg.pretrain.precision == Precision::Fp16).then(LossScaler::default);
        let adam = Adam::new(&vs, cfg.pretrain.weight_decay);
        Trainer {
            vs,
            model,
            adam,
            cfg: cfg.clone(),
            layout,
            epoch: 0,
            step: 0,
            pg: None,
            scaler,
            reducer: None,
            dp: DpStats::default(),
        }
    }

    /// Initialise the encoder from a weight file (ours, official `.pt` or safetensors).
    pub fn init_encoder(&mut self, path: &Path) -> Result<()> {
        let state = checkpoint::encoder_state(path)?;
        checkpoint::load_into(&self.vs, "encoder.", &state, path)
    }

    /// One optimisation step on joint batch `x`; returns the (device) losses.
    /// With `pretrain.sync_bn`, the encoder's norms use the synchronised formula over
    /// this batch, so the step equals a data-parallel one on the same global batch.
    pub fn train_step(&mut self, x: &Tensor, lr: f64) -> StepLosses {
        let mut rng = self.step_rng();
        let guard = self.cfg.pretrain.sync_bn.then(|| SyncGuard::new(None));
        let losses = pstl_losses(&self.model, x, &self.cfg, &self.layout, &mut rng, true);
        // Without a group no collective runs, so there is no error to report.
        drop(guard);
        self.apply(&losses, lr);
        losses
    }

    /// Backward and optimiser step of `losses`.
    pub fn apply(&mut self, losses: &StepLosses, lr: f64) {
        self.backward(losses);
        self.optimizer_step(lr);
    }

    /// Gradients of `losses.total` (of the scaled loss under fp16).
    pub fn backward(&mut self, losses: &StepLosses) {
        self.adam.zero_grad();
        match &self.scaler {
            None => losses.total.backward(),
            Some(scaler) => (&losses.total * scaler.scale).backward(),
        }
    }

    /// Adam update from the current gradients; under fp16 the gradients are unscaled
    /// first and a step with a non-finite gradient is skipped.
    pub fn optimizer_step(&mut self, lr: f64) {
        let take = match &mut self.scaler {
            None => true,
            Some(scaler) => scaler.unscale(&self.vs.trainable_variables()),
        };
        if take {
            self.adam.step(lr);
        }
        self.step += 1;
    }

    /// The random generator of the next step (seeds libtorch's generator too).
    pub fn step_rng(&self) -> PstlRng {
        let seed = step_seed(self.cfg.run.seed, self.step);
        tch::manual_seed(seed as i64);
        PstlRng::seed_from_u64(seed)
    }

    /// Trainable variables (`true`) or buffers (`false`), in name order.
    pub(super) fn named(&self, trainable: bool) -> Vec<Tensor> {
        self.named_pairs(trainable)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// [`Trainer::named`] with the names.
    pub(super) fn named_pairs(&self, trainable: bool) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad() == trainable)
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Copy rank 0's parameters and buffers to every rank.
    pub fn broadcast_state(&self) -> Result<()> {
        if let Some(pg) = &self.pg {
            pg.broadcast_all(&self.named(true))?;
            pg.broadcast_all(&self.named(false))?;
        }
        Ok(())
    }

    /// Learning rate at `epoch` + `frac` of an epoch.
    pub fn lr_at(&self, epoch: usize, frac: f64) -> f64 {
        let p = &self.cfg.pretrain;
        let e = match p.schedule {
            Schedule::Epoch => epoch as f64,
            Schedule::Step => epoch as f64 + frac,
        };
        warmup_cosine(p.lr, e, p.warmup_epochs, p.epochs)
    }

    /// Save the full state atomically (one file; a run keeps several through
    /// [`super::keep::save_kept`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::atomic_write(path, &self.checkpoint_bytes()?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The full state as safetensors bytes, with tensor digests.
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors =
            checkpoint::state_dict(&self.vs, "encoder.", "encoder.", self.step as i64);
        tensors.extend(checkpoint::state_dict(
            &self.vs,
            "projector.",
            "projector.",
            self.step as i64,
        ));
        tensors.extend(self.adam.state());
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), checkpoint::FORMAT.into());
        meta.insert("version".into(), "1".into());
        meta.insert("epoch".into(), self.epoch.to_string());
        meta.insert("step".into(), self.step.to_string());
        meta.insert("seed".into(), self.cfg.run.seed.to_string());
        meta.insert("config".into(), self.cfg.to_toml());
        checkpoint::to_safetensors_bytes(&tensors, &meta)
    }

    /// Save the encoder alone with the official keys (no prefix).
    pub fn save_encoder(&self, path: &Path) -> Result<()> {
        let tensors = checkpoint::state_dict(&self.vs, "encoder.", "", self.step as i64);
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), "pstl-encoder".into());
        meta.insert("epoch".into(), self.epoch.to_string());
        meta.insert("config".into(), self.cfg.to_toml());
        checkpoint::write_safetensors(path, &tensors, &meta)
    }

    /// Restore a state written by [`Trainer::save`].
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let (state, meta) = checkpoint::read_safetensors(path)?;
        if meta.get("format").map(String::as_str) != Some(checkpoint::FORMAT) {
            bail!("{}: not a pstl training checkpoint", path.display());
        }
        let strip = |prefix: &str| -> BTreeMap<String, Tensor> {
            state
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(prefix)
                        .map(|s| (s.to_string(), v.shallow_clone()))
                })
                .collect()
        };
        checkpoint::load_into(&self.vs, "encoder.", &strip("encoder."), path)?;
        checkpoint::load_into(&self.vs, "projector.", &strip("projector."), path)?;
        self.adam
            .load_state(&state)
            .with_context(|| format!("{}: optimizer state", path.display()))?;
        let field = |k: &str| -> Result<u64> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{}: metadata `{k}` missing", path.display()))
        };
        self.epoch = field("epoch")? as usize;
        self.step = field("step")?;
        Ok(())
    }
}
