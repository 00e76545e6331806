//! The pretraining loop around [`crate::method`]: batches from the store's loader,
//! one [`Trainer`] step each (single-process or one rank of a data-parallel run), the
//! learning-rate schedule, metrics rows and loss plots, checkpoints (per epoch, timed,
//! and on a stop signal) and exact resume. The run directory's files are
//! [`crate::rundir`].
//!
//! Nothing in a step reads a value back to the host; losses are accumulated on the
//! device and read only when a metrics row is logged.

mod dp;
pub mod keep;
mod trainer;

pub use trainer::Trainer;

use crate::config::Config;
use crate::data::loader::{shard_range, BatchLoader, LoaderOptions};
use crate::data::store::Store;
use crate::device::batch_tensor;
use crate::dist::ProcessGroup;
use crate::method::{Shard, StepLosses};
use crate::model::Precision;
use crate::progress::Progress;
use crate::rundir::{MetricsLog, MetricsRow, RunFiles};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    let files = RunFiles {
        dir: run_dir.to_path_buf(),
    };
    check_precision(cfg.pretrain.precision, device)?;
    if rank == 0 {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
    }
    let loader = open_loader(cfg)?;
    let trainer = start_trainer(cfg, device, opts, &files, rank == 0)?;
    let start = Instant::now();
    let log = match rank {
        0 => {
            let mut log = MetricsLog::open(&files, trainer.step)?;
            log.config_text(trainer.step, &cfg.to_toml())?;
            Some(log)
        }
        _ => None,
    };
    let mut run = Run {
        cfg,
        opts,
        device,
        files,
        rank,
        world,
        trainer,
        loader,
        log,
        start,
        since_ckpt: Instant::now(),
        final_loss: f64::NAN,
        interrupted: false,
    };
    let first_epoch = run.trainer.epoch;
    // A mid-epoch checkpoint (signal or time-based) continues within its epoch.
    let steps_per_epoch = run.loader.num_batches();
    let skip = (run.trainer.step as usize).saturating_sub(first_epoch * steps_per_epoch);
    let last_epoch = match opts.stop_after {
        Some(n) => (first_epoch + n).min(cfg.pretrain.epochs),
        None => cfg.pretrain.epochs,
    };
    for epoch in first_epoch..last_epoch {
        let skip_now = if epoch == first_epoch { skip } else { 0 };
        let (finished, lr) = run.epoch(epoch, skip_now)?;
        if !finished {
            break;
        }
        run.end_epoch(epoch, lr, last_epoch)?;
        if run.interrupted {
            break;
        }
    }
    run.finish(first_epoch)
}

/// The shuffled training loader of the configured store (pretraining's, also timed by
/// `pstl bench --epoch`).
pub fn open_loader(cfg: &Config) -> Result<BatchLoader> {
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
    Ok(loader)
}

/// A fresh, resumed or `--init` trainer, with rank 0's state on every rank.
fn start_trainer(
    cfg: &Config,
    device: Device,
    opts: &PretrainOptions,
    files: &RunFiles,
    writer: bool,
) -> Result<Trainer> {
    let resumed = match opts.resume {
        true => keep::resume_newest(cfg, device, files, writer)?,
        false => None,
    };
    let mut trainer = match resumed {
        Some((trainer, ckpt)) => {
            if writer {
                tracing::info!(
                    "resumed from {} at epoch {} (step {})",
                    ckpt.display(),
                    trainer.epoch,
                    trainer.step
                );
            }
            trainer
        }
        None => {
            let mut trainer = Trainer::new(cfg, device);
            if let Some(init) = &opts.init {
                trainer.init_encoder(init)?;
                if writer {
                    tracing::info!("encoder initialised from {}", init.display());
                }
            }
            trainer
        }
    };
    trainer.pg = opts.dist.clone();
    trainer.broadcast_state()?;
    Ok(trainer)
}

/// The state of one pretraining invocation.
struct Run<'a> {
    cfg: &'a Config,
    opts: &'a PretrainOptions,
    device: Device,
    files: RunFiles,
    rank: usize,
    world: usize,
    trainer: Trainer,
    loader: BatchLoader,
    /// Rank 0's metrics file.
    log: Option<MetricsLog>,
    start: Instant,
    since_ckpt: Instant,
    final_loss: f64,
    interrupted: bool,
}

impl Run<'_> {
    /// The steps of `epoch` from batch `skip` on; returns whether the epoch finished
    /// (not stopped by a signal before its last batch) and the last learning rate.
    fn epoch(&mut self, epoch: usize, skip: usize) -> Result<(bool, f64)> {
        let steps_per_epoch = self.loader.num_batches();
        let writer = self.rank == 0;
        let mut bar = Progress::new(
            &format!("epoch {}/{}", epoch + 1, self.cfg.pretrain.epochs),
            if writer { steps_per_epoch as u64 } else { 0 },
        );
        let mut acc = Accum::new();
        let mut lr = self.trainer.lr_at(epoch, 0.0);
        let mut finished = true;
        let batches = self
            .loader
            .epoch_shard(epoch as u64, self.rank, self.world)
            .enumerate();
        for (i, batch) in batches.skip(skip) {
            let batch = batch?;
            lr = self.trainer.lr_at(epoch, i as f64 / steps_per_epoch as f64);
            let global = self
                .cfg
                .pretrain
                .batch_size
                .min(self.loader.len() - i * self.cfg.pretrain.batch_size);
            let x = batch_tensor(&batch.x, batch.shape, self.device);
            let Some(losses) = self.step(&x, global, lr)? else {
                continue; // a last batch too small to give every rank a row
            };
            acc.add(&losses, global);
            let last = i + 1 == steps_per_epoch;
            self.log_step(&mut acc, &mut bar, epoch, lr, last)?;
            bar.inc(1);
            if self.stop_or_checkpoint(last)? {
                self.interrupted = true;
                finished = last;
                break;
            }
        }
        bar.finish();
        Ok((finished, lr))
    }

    /// One step on a batch of `global` rows (this rank's part `x`); `None` when a
    /// data-parallel batch has fewer rows than ranks.
    fn step(&mut self, x: &Tensor, global: usize, lr: f64) -> Result<Option<StepLosses>> {
        if self.opts.dist.is_none() {
            return Ok(Some(self.trainer.train_step(x, lr)));
        }
        if global < self.world {
            return Ok(None);
        }
        let offset = shard_range(global, self.rank, self.world).start;
        Ok(Some(self.trainer.train_step_dp(
            x,
            Shard { offset, global },
            lr,
        )?))
    }

    /// Rank 0: a metrics row every `log_every` steps and at the end of the epoch.
    fn log_step(
        &mut self,
        acc: &mut Accum,
        bar: &mut Progress,
        epoch: usize,
        lr: f64,
        last: bool,
    ) -> Result<()> {
        let step = self.trainer.step;
        let ckpt = self.files.checkpoint();
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        if step % self.cfg.pretrain.log_every as u64 == 0 || last {
            if let Some(loss) = log_interval(log, acc, epoch, step, lr, self.start, &ckpt)? {
                bar.set_message(format!("loss {loss:.3} lr {lr:.2e}"));
                self.final_loss = loss;
            }
        }
        Ok(())
    }

    /// After a step: a checkpoint when a stop signal or a timed checkpoint is due
    /// (mid-epoch only: the epoch's end writes its own); returns whether to stop.
    fn stop_or_checkpoint(&mut self, last: bool) -> Result<bool> {
        let (stop, due) = stop_and_due(self.opts, self.cfg, self.since_ckpt, self.device)?;
        if (stop || due) && !last {
            if self.rank == 0 {
                self.save()?;
            }
            self.since_ckpt = Instant::now();
        }
        Ok(stop)
    }

    /// Rank 0 after a finished epoch: the log line, the loss plot and the checkpoint.
    fn end_epoch(&mut self, epoch: usize, lr: f64, last_epoch: usize) -> Result<()> {
        self.trainer.epoch = epoch + 1;
        if self.rank != 0 {
            return Ok(());
        }
        log_epoch(epoch, self.cfg.pretrain.epochs, self.final_loss, lr);
        if let Some(log) = &self.log {
            plot_losses(&self.files.loss_plot(), &log.history);
        }
        if self.trainer.epoch % self.cfg.pretrain.checkpoint_every == 0
            || self.trainer.epoch == last_epoch
            || self.interrupted
        {
            self.save()?;
            self.since_ckpt = Instant::now();
        }
        Ok(())
    }

    /// Rank 0: the checkpoint, as the newest of `pretrain.keep_checkpoints`.
    fn save(&self) -> Result<()> {
        keep::save_kept(
            &self.trainer,
            &self.files,
            self.cfg.pretrain.keep_checkpoints,
        )
    }

    /// The final encoder (rank 0, unless stopped), the ranks' last barrier and the
    /// all-reduce time, and the report.
    fn finish(self, first_epoch: usize) -> Result<PretrainReport> {
        if self.rank == 0 && !self.interrupted {
            self.trainer.save_encoder(&self.files.encoder())?;
        }
        if let Some(pg) = &self.opts.dist {
            // No rank leaves (a launcher would kill the rest) before rank 0 has written.
            pg.barrier()?;
            dp::log_dp(pg, &self.trainer.dp, self.cfg.pretrain.grad_sync);
        }
        let _ = std::io::stderr().flush();
        Ok(PretrainReport {
            final_loss: self.final_loss,
            epochs_run: self.trainer.epoch - first_epoch,
            epochs_done: self.trainer.epoch,
            seconds: self.start.elapsed().as_secs_f64(),
            encoder: self.files.encoder(),
            step: self.trainer.step,
            interrupted: self.interrupted,
        })
    }
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
