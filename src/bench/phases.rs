//! `pstl bench --phases`: the step cut finer than [`super::run`] does: the views, each
//! encoder block (summed over the three views' passes), the pooling, the projector,
//! the losses, the backward pass and the optimizer; and `pstl bench --epoch`: one
//! epoch of the store through the loader and the step, with the time spent waiting
//! for the loader.
//!
//! Phases are timed with the wall clock after a device synchronisation at each
//! boundary (tch has no CUDA event API; with a sync at every boundary the two agree,
//! at the cost of the launch overlap a real step has, so the phases add up to a bit
//! more than an unprobed step).

use super::{checked_batch, sync};
use crate::config::Config;
use crate::method::{pstl_views, StepLosses};
use crate::model::head::bt_loss;
use crate::train::Trainer;
use anyhow::Result;
use std::time::Instant;
use tch::{Device, Tensor};

/// Mean milliseconds per step of each phase, in step order.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Timed steps.
    pub steps: usize,
    /// `(phase, ms per step)`.
    pub phases: Vec<(String, f64)>,
}

impl PhaseReport {
    /// Sum of the phases, ms per step.
    pub fn total_ms(&self) -> f64 {
        self.phases.iter().map(|(_, ms)| ms).sum()
    }
}

/// Accumulates seconds under names, keeping the first-seen order.
struct Clock {
    device: Device,
    last: Instant,
    names: Vec<String>,
    seconds: Vec<f64>,
    on: bool,
}

impl Clock {
    fn new(device: Device) -> Self {
        Clock {
            device,
            last: Instant::now(),
            names: Vec::new(),
            seconds: Vec::new(),
            on: false,
        }
    }
    /// Synchronise and restart the clock without charging anyone.
    fn reset(&mut self) {
        sync(self.device);
        self.last = Instant::now();
    }
    /// Synchronise and charge the time since the last mark to `name`.
    fn mark(&mut self, name: &str) {
        sync(self.device);
        let now = Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        if !self.on {
            return;
        }
        match self.names.iter().position(|n| n == name) {
            Some(i) => self.seconds[i] += dt,
            None => {
                self.names.push(name.to_string());
                self.seconds.push(dt);
            }
        }
    }
}

/// `warmup` untimed steps, then `steps` timed ones, split into phases.
pub fn phases(cfg: &Config, device: Device, steps: usize, warmup: usize) -> Result<PhaseReport> {
    let x = checked_batch(cfg, device)?;
    let mut trainer = Trainer::new(cfg, device);
    let lr = 1e-3;
    let mut clock = Clock::new(device);
    for i in 0..warmup + steps {
        clock.on = i >= warmup;
        clock.reset();
        let mut rng = trainer.step_rng();
        let views = pstl_views(&x, cfg, &trainer.layout, &mut rng);
        clock.mark("views (augment + masks)");
        let model = &trainer.model;
        let embed = |v: &Tensor, drop: &[usize], clock: &mut Clock| {
            let f = model.encoder.forward_drop_probed(v, drop, true, &mut |b| {
                clock.mark(&if b == 0 {
                    "encoder input (data_bn, CSM cut)".to_string()
                } else {
                    format!("encoder block {b}")
                })
            });
            clock.mark("encoder pooling");
            let z = model.head.embed(&f, true);
            clock.mark("projector");
            z
        };
        let z1 = embed(&views.anchor, &[], &mut clock);
        let z2 = embed(&views.temporal, &[], &mut clock);
        let z3 = embed(&views.spatial, &views.drop, &mut clock);
        let matm = bt_loss(&z1, &z2, cfg.pretrain.lambda);
        let csm = bt_loss(&z1, &z3, cfg.pretrain.lambda);
        let losses = StepLosses {
            total: &matm.total + &csm.total,
            matm,
            csm,
        };
        clock.mark("losses");
        trainer.backward(&losses);
        clock.mark("backward");
        trainer.optimizer_step(lr);
        clock.mark("optimizer");
    }
    let per = |s: f64| 1e3 * s / steps.max(1) as f64;
    Ok(PhaseReport {
        steps,
        phases: clock
            .names
            .into_iter()
            .zip(clock.seconds)
            .map(|(n, s)| (n, per(s)))
            .collect(),
    })
}

/// Result of [`epoch`].
#[derive(Debug, Clone)]
pub struct EpochReport {
    /// Samples trained on.
    pub samples: usize,
    /// Steps taken.
    pub steps: usize,
    /// Wall seconds from the first request of a batch to the last step's end.
    pub seconds: f64,
    /// Seconds blocked waiting for the loader's next batch.
    pub wait_seconds: f64,
    /// Loss of the last step.
    pub last_loss: f64,
}

impl EpochReport {
    /// Samples per second over the epoch.
    pub fn samples_per_s(&self) -> f64 {
        self.samples as f64 / self.seconds.max(1e-12)
    }
    /// Share of the wall time spent waiting for the loader.
    pub fn wait_share(&self) -> f64 {
        self.wait_seconds / self.seconds.max(1e-12)
    }
}

/// One shuffled epoch of `data.path`'s train split (the pretraining loader,
/// its prefetch and memory budget) through the training step, unsynchronised
/// as in `pstl pretrain`; `warmup` batches first (untimed: cuDNN's tuning).
pub fn epoch(cfg: &Config, device: Device, warmup: usize) -> Result<EpochReport> {
    crate::train::check_precision(cfg.pretrain.precision, device)?;
    let loader = crate::train::open_loader(cfg)?;
    let mut trainer = Trainer::new(cfg, device);
    let lr = 1e-3;
    for batch in loader.epoch(u64::MAX).take(warmup) {
        let b = batch?;
        let x = crate::device::batch_tensor(&b.x, b.shape, device);
        trainer.train_step(&x, lr);
    }
    sync(device);
    let (mut samples, mut steps, mut wait) = (0, 0, 0.0);
    let mut last = Tensor::from(f64::NAN);
    let t0 = Instant::now();
    let mut batches = loader.epoch(0);
    loop {
        let tw = Instant::now();
        let Some(batch) = batches.next() else { break };
        wait += tw.elapsed().as_secs_f64();
        let b = batch?;
        let x = crate::device::batch_tensor(&b.x, b.shape, device);
        samples += x.size()[0] as usize;
        last = trainer.train_step(&x, lr).total;
        steps += 1;
    }
    let last_loss = last.double_value(&[]);
    sync(device);
    Ok(EpochReport {
        samples,
        steps,
        seconds: t0.elapsed().as_secs_f64(),
        wait_seconds: wait,
        last_loss,
    })
}
