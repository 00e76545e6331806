//! PSTL pretraining (paper §3, Algorithm 1): per step three views of a batch — anchor
//! (augmentations only), MATM (motion-attention temporal masking) and CSM (central
//! spatial masking) — one shared encoder and projector, and the loss
//! `BT(anchor, MATM) + BT(anchor, CSM)`; Adam with warm-up + cosine; metrics, plots,
//! atomic checkpoints and exact resume.
//!
//! A step is a function of (model, batch, step seed): [`pstl_losses`] builds the loss,
//! [`Trainer::train_step`] applies it, so a gradient all-reduce can slot in between.
//! Nothing in a step reads a value back to the host; losses are accumulated on the
//! device and read only when a metrics row is logged.

use crate::augment::augment;
use crate::checkpoint;
use crate::config::{Config, Schedule};
use crate::data::loader::{shard_range, BatchLoader, LoaderOptions};
use crate::data::store::Store;
use crate::dist::sync_bn::SyncGuard;
use crate::dist::ProcessGroup;
use crate::masking::{csm_draw, matm_with};
use crate::model::{bt_loss, BtLoss, Layout, LossScaler, Precision, Pstl};
use crate::optim::{warmup_cosine, Adam};
use crate::progress::Progress;
use crate::rng::PstlRng;
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The losses of one step, as device tensors.
#[derive(Debug)]
pub struct StepLosses {
    /// `BT(anchor, MATM) + BT(anchor, CSM)`.
    pub total: Tensor,
    /// `BT(anchor, MATM)`.
    pub matm: BtLoss,
    /// `BT(anchor, CSM)`.
    pub csm: BtLoss,
}

/// Seed of step `step` of a run seeded `seed` (SplitMix64 of the pair).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The three inputs of a PSTL step.
#[derive(Debug)]
pub struct PstlViews {
    /// Anchor: augmentations only.
    pub anchor: Tensor,
    /// Augmented, then MATM (`T - 2m` frames).
    pub temporal: Tensor,
    /// Augmented; its joints `drop` are removed inside the encoder (CSM).
    pub spatial: Tensor,
    /// The CSM draw (may repeat a joint, as the authors' does).
    pub drop: Vec<usize>,
}

/// The three views of joint batch `x`, in the authors' order (YujieOuO/PSTL
/// `procedure.py`, `BTProcessor.train_epoch`): the stream is computed first
/// (`data = get_stream(data)`), then each view draws its own crop, shear, rotation and
/// flip; the MATM view is masked after augmenting; the CSM draw comes last.
pub fn pstl_views(x: &Tensor, cfg: &Config, layout: &Layout, rng: &mut PstlRng) -> PstlViews {
    let data = cfg.data.stream.apply(x, layout);
    let view = |rng: &mut PstlRng| augment(&data, &cfg.augment, layout, rng);
    let anchor = view(rng);
    let temporal = view(rng);
    let temporal = if cfg.pretrain.mask_frame > 0 {
        matm_with(
            &temporal,
            cfg.pretrain.mask_frame,
            cfg.augment.per_sample,
            rng,
        )
    } else {
        temporal
    };
    let spatial = view(rng);
    let drop = csm_draw(layout, cfg.pretrain.mask_joint, rng);
    PstlViews {
        anchor,
        temporal,
        spatial,
        drop,
    }
}

/// Build the three views of joint batch `x` and return the PSTL losses.
pub fn pstl_losses(
    model: &Pstl,
    x: &Tensor,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
    train: bool,
) -> StepLosses {
    let views = pstl_views(x, cfg, layout, rng);
    views_losses(model, &views, cfg, train)
}

/// The PSTL losses of prepared views: the anchor is encoded and projected once and
/// serves both losses.
pub fn views_losses(model: &Pstl, v: &PstlViews, cfg: &Config, train: bool) -> StepLosses {
    let z1 = model
        .head
        .embed(&model.encoder.forward_drop(&v.anchor, &[], train), train);
    let z2 = model
        .head
        .embed(&model.encoder.forward_drop(&v.temporal, &[], train), train);
    let z3 = model.head.embed(
        &model.encoder.forward_drop(&v.spatial, &v.drop, train),
        train,
    );
    let matm_loss = bt_loss(&z1, &z2, cfg.pretrain.lambda);
    let csm_loss = bt_loss(&z1, &z3, cfg.pretrain.lambda);
    StepLosses {
        total: &matm_loss.total + &csm_loss.total,
        matm: matm_loss,
        csm: csm_loss,
    }
}

/// This rank's rows `[offset, offset + n)` of a global batch of `global` rows.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    /// First row of this rank.
    pub offset: usize,
    /// Rows of the global batch.
    pub global: usize,
}

/// Data-parallel PSTL losses: the views are drawn for the global batch (every rank
/// draws the same numbers; other ranks' rows are zeros) and cut to this rank's rows;
/// the encoder runs on those rows; the features are all-gathered with gradient and
/// the projector, its batch norms and both losses run on the global batch.
pub fn pstl_losses_dp(
    model: &Pstl,
    x: &Tensor,
    shard: Shard,
    pg: &crate::dist::ProcessGroup,
    cfg: &Config,
    layout: &Layout,
    rng: &mut PstlRng,
) -> Result<StepLosses, crate::dist::DistError> {
    let n = x.size()[0];
    let mut dims = x.size();
    dims[0] = shard.global as i64;
    let full = Tensor::zeros(dims.as_slice(), (x.kind(), x.device()));
    full.narrow(0, shard.offset as i64, n).copy_(x);
    let v = pstl_views(&full, cfg, layout, rng);
    let cut = |t: &Tensor| t.narrow(0, shard.offset as i64, n);
    let embed = |t: &Tensor, drop: &[usize]| {
        let f = model.encoder.forward_drop(&cut(t), drop, true);
        Ok::<_, crate::dist::DistError>(model.head.embed(&pg.all_gather_rows_autograd(&f)?, true))
    };
    let z1 = embed(&v.anchor, &[])?;
    let z2 = embed(&v.temporal, &[])?;
    let z3 = embed(&v.spatial, &v.drop)?;
    let matm_loss = bt_loss(&z1, &z2, cfg.pretrain.lambda);
    let csm_loss = bt_loss(&z1, &z3, cfg.pretrain.lambda);
    Ok(StepLosses {
        total: &matm_loss.total + &csm_loss.total,
        matm: matm_loss,
        csm: csm_loss,
    })
}

/// Names of the files in a run directory.
pub struct RunFiles {
    /// The run directory.
    pub dir: PathBuf,
}

impl RunFiles {
    /// Latest checkpoint (full state, for resume).
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }
    /// Final encoder in official keys (what `eval`, `embed` and `export` take).
    pub fn encoder(&self) -> PathBuf {
        self.dir.join("encoder.safetensors")
    }
    /// Per-interval metrics.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
    /// Loss curves.
    pub fn loss_plot(&self) -> PathBuf {
        self.dir.join("loss.png")
    }
}

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
    /// Seconds spent averaging gradients over ranks (after backward: no overlap).
    pub allreduce_seconds: f64,
}

/// Outcome of a pretraining run.
#[derive(Debug, Clone)]
pub struct PretrainReport {
    /// Loss of the last logged interval.
    pub final_loss: f64,
    /// Epochs trained in this invocation.
    pub epochs_run: usize,
    /// Epochs completed in total.
    pub epochs_done: usize,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
    /// Path of the final encoder.
    pub encoder: PathBuf,
    /// Optimiser steps completed in total.
    pub step: u64,
    /// Stopped by a signal (checkpoint written; rerun to continue).
    pub interrupted: bool,
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
            allreduce_seconds: 0.0,
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

    /// One data-parallel step on this rank's rows `x` of the global batch `shard`:
    /// buffers from rank 0 (per-rank batch norm, as DDP), the losses of
    /// [`pstl_losses_dp`], gradients averaged over ranks. Without a process group, the
    /// single-process [`Trainer::train_step`].
    pub fn train_step_dp(&mut self, x: &Tensor, shard: Shard, lr: f64) -> Result<StepLosses> {
        let Some(pg) = self.pg.clone() else {
            return Ok(self.train_step(x, lr));
        };
        let seed = step_seed(self.cfg.run.seed, self.step);
        // Dropout masks differ per rank as in DDP; the host draws of the views do not.
        tch::manual_seed(seed.wrapping_add(pg.rank as u64) as i64);
        let mut rng = PstlRng::seed_from_u64(seed);
        let sync = self.cfg.pretrain.sync_bn;
        if !sync {
            pg.broadcast_all(&self.named(false))?;
        }
        let guard = sync.then(|| SyncGuard::new(Some(Arc::clone(&pg))));
        let losses = pstl_losses_dp(
            &self.model,
            x,
            shard,
            &pg,
            &self.cfg,
            &self.layout,
            &mut rng,
        );
        if let Some(g) = guard {
            g.finish()?;
        }
        let losses = losses?;
        self.adam.zero_grad();
        let total = match &self.scaler {
            None => losses.total.shallow_clone(),
            Some(scaler) => &losses.total * scaler.scale,
        };
        total
            .f_backward()
            .with_context(|| format!("rank {}/{}: backward", pg.rank, pg.world))?;
        let t0 = Instant::now();
        pg.average_gradients(&self.named(true))?;
        self.allreduce_seconds += t0.elapsed().as_secs_f64();
        // Identical gradients on every rank now, so fp16's skip decision agrees.
        self.optimizer_step(lr);
        Ok(losses)
    }

    /// Trainable variables (`true`) or buffers (`false`), in name order.
    fn named(&self, trainable: bool) -> Vec<Tensor> {
        let vars = self.vs.variables();
        let mut names: Vec<&String> = vars
            .iter()
            .filter(|(_, t)| t.requires_grad() == trainable)
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names.into_iter().map(|k| vars[k].shallow_clone()).collect()
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

    /// Save the full state atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
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
        checkpoint::write_safetensors(path, &tensors, &meta)
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

/// One metrics row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricsRow {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Global step after this interval.
    pub step: u64,
    /// Learning rate.
    pub lr: f64,
    /// Mean total loss over the interval.
    pub loss: f64,
    /// Mean BT(anchor, MATM).
    pub loss_matm: f64,
    /// Mean BT(anchor, CSM).
    pub loss_csm: f64,
    /// Mean on-diagonal part (both losses).
    pub on_diag: f64,
    /// Mean off-diagonal part (both losses, before lambda).
    pub off_diag: f64,
    /// Throughput over the interval.
    pub samples_per_s: f64,
    /// Seconds since the start of this invocation.
    pub seconds: f64,
}

/// Running sums of the losses, kept on the device until logged.
struct Accum {
    sums: Option<Tensor>,
    steps: usize,
    samples: usize,
    since: Instant,
}

impl Accum {
    fn new() -> Self {
        Accum {
            sums: None,
            steps: 0,
            samples: 0,
            since: Instant::now(),
        }
    }
    fn add(&mut self, l: &StepLosses, n: usize) {
        let v = Tensor::stack(
            &[
                l.total.detach(),
                l.matm.total.detach(),
                l.csm.total.detach(),
                (&l.matm.on_diag + &l.csm.on_diag).detach(),
                (&l.matm.off_diag + &l.csm.off_diag).detach(),
            ],
            0,
        );
        self.sums = Some(match self.sums.take() {
            Some(s) => s + v,
            None => v,
        });
        self.steps += 1;
        self.samples += n;
    }
    /// Read the means back (the only host synchronisation) and reset.
    fn take(&mut self) -> Option<([f64; 5], f64)> {
        let sums = self.sums.take()?;
        let v: Vec<f64> =
            Vec::<f64>::try_from(sums.to_kind(Kind::Double).to_device(Device::Cpu)).ok()?;
        let n = self.steps.max(1) as f64;
        let rate = self.samples as f64 / self.since.elapsed().as_secs_f64().max(1e-9);
        *self = Accum::new();
        Some(([v[0] / n, v[1] / n, v[2] / n, v[3] / n, v[4] / n], rate))
    }
}

/// Copy a host batch to the device as `(N, C, T, V, M)` float; on CUDA through pinned
/// memory with a non-blocking copy (the step queues behind it without a host wait).
pub fn batch_tensor(x: &[f32], shape: [usize; 5], device: Device) -> Tensor {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let host = Tensor::from_slice(x).view(dims.as_slice());
    match device {
        Device::Cuda(_) => pinned(&host).to_device_(device, Kind::Float, true, false),
        _ => host.to_device(device),
    }
}

extern "C" {
    // src/dist/bridge.cpp
    fn pstl_pin_memory(
        t: *const torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut *mut std::ffi::c_char,
    ) -> i32;
}

/// A page-locked copy of `host` for an asynchronous host-to-device copy; `host` itself
/// when pinning fails (the copy is then synchronous).
fn pinned(host: &Tensor) -> Tensor {
    let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    if unsafe { pstl_pin_memory(host.as_ptr(), &mut out, &mut err) } == 0 && !out.is_null() {
        unsafe { Tensor::from_ptr(out) }
    } else {
        tracing::debug!("pinning a batch failed: {}", crate::dist::take_error(err));
        host.shallow_clone()
    }
}

/// Refuse a precision the device cannot run: fp16 needs CUDA (no loss-scaled fp16
/// kernels worth using on CPU); bf16 runs everywhere.
pub fn check_precision(precision: Precision, device: Device) -> Result<()> {
    if precision == Precision::Fp16 && !device.is_cuda() {
        bail!(
            "pretrain.precision = \"fp16\" needs a CUDA device (got {}); use \"bf16\" or \"fp32\" on CPU",
            crate::device::device_name(device)
        );
    }
    Ok(())
}

/// How a pretraining invocation starts and stops.
#[derive(Debug, Clone, Default)]
pub struct PretrainOptions {
    /// Continue from the run directory's checkpoint when there is one.
    pub resume: bool,
    /// Initialise the encoder from this file (fresh runs only).
    pub init: Option<PathBuf>,
    /// Stop after this many epochs of this invocation (a scheduler time slice); a
    /// later `--resume` continues to the same result as an uninterrupted run.
    pub stop_after: Option<usize>,
    /// Process group of a data-parallel run (rank 0 writes every file).
    pub dist: Option<Arc<ProcessGroup>>,
    /// Set by a stop signal: finish the step, write a checkpoint, return.
    pub stop: Option<Arc<AtomicBool>>,
}

/// Rank 0's metrics file and history.
struct MetricsLog {
    csv: csv::Writer<std::fs::File>,
    history: Vec<MetricsRow>,
}

impl MetricsLog {
    /// Open `metrics.csv` for a run at `step`: cut back to that step (a killed run may
    /// have logged past its checkpoint, or half a line), or started anew at step 0.
    fn open(files: &RunFiles, step: u64) -> Result<Self> {
        let path = files.metrics();
        let history = if step > 0 {
            crate::runctl::remove_stale_tmp(&files.dir)?;
            crate::runctl::truncate_metrics(&path, step)?
        } else {
            Vec::new()
        };
        let append = step > 0 && path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let csv = csv::WriterBuilder::new()
            .has_headers(!append)
            .from_writer(file);
        Ok(MetricsLog { csv, history })
    }

    fn push(&mut self, row: MetricsRow) -> Result<()> {
        self.csv.serialize(&row)?;
        self.csv.flush()?;
        self.history.push(row);
        Ok(())
    }
}

/// Whether to stop (a signal on any rank) and to write a time-based checkpoint (rank
/// 0's clock), agreed by all ranks.
fn stop_and_due(
    opts: &PretrainOptions,
    cfg: &Config,
    since_ckpt: Instant,
    device: Device,
) -> Result<(bool, bool)> {
    let stop = opts.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
    let minutes = cfg.pretrain.checkpoint_minutes;
    let rank = opts.dist.as_ref().map_or(0, |pg| pg.rank);
    let due = rank == 0 && minutes > 0.0 && since_ckpt.elapsed().as_secs_f64() >= minutes * 60.0;
    match &opts.dist {
        None => Ok((stop, due)),
        Some(pg) => {
            let mut f = crate::dist::flags([stop, due], device);
            pg.all_reduce_max(&mut f)?;
            let v = Vec::<f32>::try_from(f.to_device(Device::Cpu))?;
            Ok((v[0] > 0.5, v[1] > 0.5))
        }
    }
}

/// Run (or resume) pretraining as configured; writes into `run_dir`.
pub fn pretrain(
    cfg: &Config,
    device: Device,
    run_dir: &Path,
    opts: &PretrainOptions,
) -> Result<PretrainReport> {
    let (rank, world) = opts.dist.as_ref().map_or((0, 1), |pg| (pg.rank, pg.world));
    let writer = rank == 0;
    let files = RunFiles {
        dir: run_dir.to_path_buf(),
    };
    check_precision(cfg.pretrain.precision, device)?;
    if writer {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
    }
    let store = Store::open(&cfg.data.path)
        .with_context(|| format!("opening data store {}", cfg.data.path.display()))?;
    if store.meta().layout != cfg.model.layout {
        bail!(
            "{}: layout `{}` does not match model.layout `{}`",
            cfg.data.path.display(),
            store.meta().layout,
            cfg.model.layout
        );
    }
    let loader = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            batch_size: cfg.pretrain.batch_size,
            shuffle: true,
            seed: cfg.run.seed,
            // A last batch of one sample has no batch statistics: skipped.
            drop_last: store.len("train")? % cfg.pretrain.batch_size == 1,
            prefetch: cfg.data.prefetch,
            memory_budget_bytes: cfg.data.memory_budget_mb << 20,
        },
    )?;
    let steps_per_epoch = loader.num_batches();
    let mut trainer = Trainer::new(cfg, device);
    trainer.pg = opts.dist.clone();
    let ckpt = files.checkpoint();
    if ckpt.exists() && opts.resume {
        trainer.resume(&ckpt)?;
        if writer {
            tracing::info!(
                "resumed from {} at epoch {} (step {})",
                ckpt.display(),
                trainer.epoch,
                trainer.step
            );
        }
    } else if let Some(init) = &opts.init {
        trainer.init_encoder(init)?;
        if writer {
            tracing::info!("encoder initialised from {}", init.display());
        }
    }
    trainer.broadcast_state()?;
    let start = Instant::now();
    let mut log = if writer {
        Some(MetricsLog::open(&files, trainer.step)?)
    } else {
        None
    };
    let first_epoch = trainer.epoch;
    // A mid-epoch checkpoint (signal or time-based) continues within its epoch.
    let skip = (trainer.step as usize).saturating_sub(first_epoch * steps_per_epoch);
    let mut final_loss = f64::NAN;
    let last_epoch = match opts.stop_after {
        Some(n) => (first_epoch + n).min(cfg.pretrain.epochs),
        None => cfg.pretrain.epochs,
    };
    let mut since_ckpt = Instant::now();
    let mut interrupted = false;
    for epoch in first_epoch..last_epoch {
        let mut bar = Progress::new(
            &format!("epoch {}/{}", epoch + 1, cfg.pretrain.epochs),
            if writer { steps_per_epoch as u64 } else { 0 },
        );
        let mut acc = Accum::new();
        let mut lr = trainer.lr_at(epoch, 0.0);
        let mut finished = true;
        let skip_now = if epoch == first_epoch { skip } else { 0 };
        let batches = loader.epoch_shard(epoch as u64, rank, world).enumerate();
        for (i, batch) in batches.skip(skip_now) {
            let batch = batch?;
            lr = trainer.lr_at(epoch, i as f64 / steps_per_epoch as f64);
            let global = cfg
                .pretrain
                .batch_size
                .min(loader.len() - i * cfg.pretrain.batch_size);
            let x = batch_tensor(&batch.x, batch.shape, device);
            let losses = if opts.dist.is_some() {
                if global < world {
                    continue; // a last batch too small to give every rank a row
                }
                let offset = shard_range(global, rank, world).start;
                trainer.train_step_dp(&x, Shard { offset, global }, lr)?
            } else {
                trainer.train_step(&x, lr)
            };
            acc.add(&losses, global);
            let last = i + 1 == steps_per_epoch;
            if let Some(log) = log.as_mut() {
                if trainer.step % cfg.pretrain.log_every as u64 == 0 || last {
                    if let Some(loss) =
                        log_interval(log, &mut acc, epoch, trainer.step, lr, start, &ckpt)?
                    {
                        bar.set_message(format!("loss {loss:.3} lr {lr:.2e}"));
                        final_loss = loss;
                    }
                }
            }
            bar.inc(1);
            let (stop, due) = stop_and_due(opts, cfg, since_ckpt, device)?;
            if (stop || due) && !last {
                if writer {
                    trainer.save(&ckpt)?;
                }
                since_ckpt = Instant::now();
            }
            if stop {
                interrupted = true;
                finished = last;
                break;
            }
        }
        bar.finish();
        if !finished {
            break;
        }
        trainer.epoch = epoch + 1;
        if writer {
            log_epoch(epoch, cfg.pretrain.epochs, final_loss, lr);
            if let Some(log) = &log {
                plot_losses(&files.loss_plot(), &log.history);
            }
            if trainer.epoch % cfg.pretrain.checkpoint_every == 0
                || trainer.epoch == last_epoch
                || interrupted
            {
                trainer.save(&ckpt)?;
                since_ckpt = Instant::now();
            }
        }
        if interrupted {
            break;
        }
    }
    if writer && !interrupted {
        trainer.save_encoder(&files.encoder())?;
    }
    if let Some(pg) = &opts.dist {
        // No rank leaves (a launcher would kill the rest) before rank 0 has written.
        pg.barrier()?;
        let total = start.elapsed().as_secs_f64();
        tracing::info!(
            allreduce_seconds = trainer.allreduce_seconds,
            "rank {}/{}: gradient all-reduce took {:.2} s of {:.1} s ({:.1}%), after backward \
             (tch has no gradient hooks, so it does not overlap backward)",
            pg.rank,
            pg.world,
            trainer.allreduce_seconds,
            total,
            100.0 * trainer.allreduce_seconds / total.max(1e-9)
        );
    }
    let _ = std::io::stderr().flush();
    Ok(PretrainReport {
        final_loss,
        epochs_run: trainer.epoch - first_epoch,
        epochs_done: trainer.epoch,
        seconds: start.elapsed().as_secs_f64(),
        encoder: files.encoder(),
        step: trainer.step,
        interrupted,
    })
}

fn log_epoch(epoch: usize, epochs: usize, loss: f64, lr: f64) {
    tracing::info!(
        epoch = epoch + 1,
        loss,
        lr,
        "epoch {}/{epochs}: loss {loss:.4} lr {lr:.3e}",
        epoch + 1
    );
}

/// Write the interval's metrics row; returns its loss. A non-finite loss is an error.
fn log_interval(
    log: &mut MetricsLog,
    acc: &mut Accum,
    epoch: usize,
    step: u64,
    lr: f64,
    start: Instant,
    ckpt: &Path,
) -> Result<Option<f64>> {
    let Some((m, rate)) = acc.take() else {
        return Ok(None);
    };
    if !m.iter().all(|v| v.is_finite()) {
        bail!(
            "non-finite loss ({}) at epoch {} step {}; stopping. The last good checkpoint is {}",
            m[0],
            epoch,
            step,
            if ckpt.exists() {
                ckpt.display().to_string()
            } else {
                "none (no epoch finished)".into()
            }
        );
    }
    log.push(MetricsRow {
        epoch,
        step,
        lr,
        loss: m[0],
        loss_matm: m[1],
        loss_csm: m[2],
        on_diag: m[3],
        off_diag: m[4],
        samples_per_s: rate,
        seconds: start.elapsed().as_secs_f64(),
    })?;
    Ok(Some(m[0]))
}

/// Read a metrics CSV back (for plots after resume).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let mut r = csv::Reader::from_path(path)?;
    Ok(r.deserialize().collect::<std::result::Result<_, _>>()?)
}

fn plot_losses(path: &Path, rows: &[MetricsRow]) {
    let series = |name: &str, f: fn(&MetricsRow) -> f64| {
        (
            name.to_string(),
            rows.iter()
                .map(|r| (r.step as f64, f(r)))
                .collect::<Vec<_>>(),
        )
    };
    let all = [
        series("loss", |r| r.loss),
        series("BT(anchor, MATM)", |r| r.loss_matm),
        series("BT(anchor, CSM)", |r| r.loss_csm),
    ];
    if let Err(e) =
        crate::plot::line_plot(path, "PSTL pretraining loss", "step", "loss", &all, true)
    {
        tracing::warn!("could not draw {}: {e:#}", path.display());
    }
}
