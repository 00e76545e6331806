//! `pstl bench`: the pretraining step timed by phase (views = augmentations + masks,
//! forward, backward, optimizer), peak memory, achieved GFLOP/s from an analytic FLOP
//! count, and a dump of one step (weights, views, losses before and after one Adam
//! update) that `benches/pytorch_step.py --check` recomputes with the authors' model.

use crate::config::Config;
use crate::method::{pstl_views, views_losses, PstlViews as Views};
use crate::model::EncoderConfig;
use crate::train::Trainer;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

mod kernels;
mod phases;
pub use kernels::{family, kernels, KernelReport};
pub use phases::{epoch, phases, EpochReport, PhaseReport};

/// Multiply-adds x 2 of one encoder forward on `(n, c, t, v, m)`: 1x1 graph
/// convolutions, the `A` aggregation, temporal convolutions and residual convolutions.
pub fn encoder_flops(cfg: &EncoderConfig, n: i64, t: i64, v: i64, m: i64) -> f64 {
    let k = 3; // spatial partitions
    let kt = cfg.temporal_kernel;
    let nm = (n * m) as f64;
    let mut t = t;
    let mut f = 0.0;
    for (cin, cout, stride, residual) in cfg.blocks() {
        let tv = (t * v) as f64;
        f += 2.0 * nm * tv * (cin * k * cout) as f64; // gcn 1x1 conv
        f += 2.0 * nm * (k * cout) as f64 * tv * v as f64; // einsum with A
        let t_out = (t + 2 * ((kt - 1) / 2) - kt) / stride + 1;
        let tv_out = (t_out * v) as f64;
        f += 2.0 * nm * tv_out * (cout * cout * kt) as f64; // temporal conv
        if residual && (cin != cout || stride != 1) {
            f += 2.0 * nm * tv_out * (cin * cout) as f64;
        }
        t = t_out;
    }
    f
}

/// FLOPs of one projector pass (256 -> D -> D -> D) over `n` rows.
pub fn projector_flops(feature: i64, dim: i64, n: i64) -> f64 {
    2.0 * n as f64 * (feature * dim + 2 * dim * dim) as f64
}

/// Forward FLOPs of pstl's step on `views`: three encoder passes, three projector
/// passes (the anchor projected once) and two Gram-form Barlow Twins losses.
pub fn step_forward_flops(cfg: &Config, views: &Views) -> f64 {
    let enc = cfg.encoder();
    let d = cfg.model.projector_dim;
    let flops = |x: &Tensor, dropped: usize| {
        let s = x.size();
        encoder_flops(&enc, s[0], s[2], s[3] - dropped as i64, s[4])
    };
    let mut kept = views.drop.clone();
    kept.sort_unstable();
    kept.dedup();
    let n = views.anchor.size()[0];
    flops(&views.anchor, 0)
        + flops(&views.temporal, 0)
        + flops(&views.spatial, kept.len())
        + 3.0 * projector_flops(enc.feature_dim, d, n)
        + 2.0 * 2.0 * 2.0 * (n * n * d) as f64
}

/// Seconds spent in each phase of the timed steps (sums).
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Augmentations, stream and masks.
    pub views: f64,
    /// Encoder, projector and losses.
    pub forward: f64,
    /// Backward pass.
    pub backward: f64,
    /// Adam update (and fp16 unscaling).
    pub optimizer: f64,
}

/// Result of [`run`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Timed steps.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Wall seconds of the timed steps.
    pub seconds: f64,
    /// Per-phase seconds.
    pub split: Split,
    /// FLOPs of the timed steps (forward x 3: backward counted as twice the forward).
    pub flops: f64,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Peak resident memory of the process (CPU), bytes.
    pub peak_rss: Option<u64>,
    /// Peak bytes held by the CUDA caching allocator (CUDA runs).
    pub peak_cuda: Option<u64>,
}

impl BenchReport {
    /// Samples per second.
    pub fn samples_per_s(&self) -> f64 {
        (self.steps * self.batch) as f64 / self.seconds.max(1e-12)
    }
    /// Achieved GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds.max(1e-12) / 1e9
    }
}

extern "C" {
    // src/dist/bridge.cpp
    fn pstl_cuda_peak_allocated(device: i32) -> i64;
}

/// Peak bytes allocated by libtorch's CUDA caching allocator on `device` (PyTorch's
/// `torch.cuda.max_memory_allocated`); `None` on CPU or without CUDA support.
pub fn cuda_peak_bytes(device: Device) -> Option<u64> {
    match device {
        Device::Cuda(i) => u64::try_from(unsafe { pstl_cuda_peak_allocated(i as i32) }).ok(),
        _ => None,
    }
}

/// Peak resident set size of this process (`VmHWM`), where `/proc` has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// A random batch `(B, 3, 50, V, 2)` for benchmarks, seeded by `run.seed`.
pub fn random_batch(cfg: &Config, device: Device) -> Tensor {
    tch::manual_seed(cfg.run.seed as i64);
    let b = cfg.pretrain.batch_size as i64;
    let v = cfg.layout().num_joints as i64;
    Tensor::randn([b, 3, 50, v, 2], (Kind::Float, device))
}

/// [`random_batch`] after the checks pretraining makes: the precision against the
/// device, the data-dependent keys against the batch's shape.
fn checked_batch(cfg: &Config, device: Device) -> Result<Tensor> {
    crate::train::check_precision(cfg.pretrain.precision, device)?;
    let x = random_batch(cfg, device);
    let size = x.size();
    cfg.validate_data(
        "the benchmark's random batch",
        size[2] as usize,
        size[3] as usize,
    )?;
    Ok(x)
}

/// `warmup` untimed steps, then `steps` timed ones, each phase synchronised.
pub fn run(cfg: &Config, device: Device, steps: usize, warmup: usize) -> Result<BenchReport> {
    let x = checked_batch(cfg, device)?;
    let mut trainer = Trainer::new(cfg, device);
    let lr = 1e-3;
    let mut split = Split::default();
    let mut flops = 0.0;
    let mut last = f64::NAN;
    for i in 0..warmup + steps {
        let timed = i >= warmup;
        let mut rng = trainer.step_rng();
        let t0 = Instant::now();
        let views = pstl_views(&x, cfg, &trainer.layout, &mut rng);
        sync(device);
        let t1 = Instant::now();
        let losses = views_losses(&trainer.model, &views, cfg, true);
        sync(device);
        let t2 = Instant::now();
        trainer.backward(&losses);
        sync(device);
        let t3 = Instant::now();
        trainer.optimizer_step(lr);
        sync(device);
        let t4 = Instant::now();
        if timed {
            split.views += (t1 - t0).as_secs_f64();
            split.forward += (t2 - t1).as_secs_f64();
            split.backward += (t3 - t2).as_secs_f64();
            split.optimizer += (t4 - t3).as_secs_f64();
            flops += 3.0 * step_forward_flops(cfg, &views);
            last = losses.total.double_value(&[]);
        }
    }
    let seconds = split.views + split.forward + split.backward + split.optimizer;
    Ok(BenchReport {
        steps,
        batch: cfg.pretrain.batch_size,
        seconds,
        split,
        flops,
        last_loss: last,
        peak_rss: peak_rss_bytes(),
        peak_cuda: cuda_peak_bytes(device),
    })
}

/// Write one step for the PyTorch check: the initial weights (official keys under
/// `encoder.` and `projector.`), the batch `x`, the three views and the CSM joints,
/// the loss, the learning rate, and the loss on the same views after one Adam update.
/// Dropout is the config's: give `model.dropout=0` for a comparable step.
pub fn dump_step(cfg: &Config, device: Device, path: &Path) -> Result<(f64, f64)> {
    let x = checked_batch(cfg, device)?;
    let mut trainer = Trainer::new(cfg, device);
    let lr = 1e-3;
    // Deep copies: Adam updates the variables in place below.
    let mut tensors: Vec<(String, Tensor)> =
        crate::checkpoint::state_dict(&trainer.vs, "encoder.", "encoder.", 0)
            .into_iter()
            .chain(crate::checkpoint::state_dict(
                &trainer.vs,
                "projector.",
                "projector.",
                0,
            ))
            .map(|(k, t)| (k, t.detach().to_device(Device::Cpu).copy()))
            .collect();
    let mut rng = trainer.step_rng();
    let views = pstl_views(&x, cfg, &trainer.layout, &mut rng);
    let before = views_losses(&trainer.model, &views, cfg, true);
    trainer.apply(&before, lr);
    let after = views_losses(&trainer.model, &views, cfg, true);
    let loss0 = before.total.double_value(&[]);
    let loss1 = after.total.double_value(&[]);
    let drop: Vec<i64> = views.drop.iter().map(|&j| j as i64).collect();
    let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu).to_kind(Kind::Float);
    tensors.push(("x".into(), cpu(&x)));
    tensors.push(("view.anchor".into(), cpu(&views.anchor)));
    tensors.push(("view.temporal".into(), cpu(&views.temporal)));
    tensors.push(("view.spatial".into(), cpu(&views.spatial)));
    tensors.push(("view.drop".into(), Tensor::from_slice(&drop)));
    tensors.push(("loss.before".into(), Tensor::from_slice(&[loss0])));
    tensors.push(("loss.after".into(), Tensor::from_slice(&[loss1])));
    let mut meta = BTreeMap::new();
    meta.insert("format".into(), "pstl-bench-step".into());
    meta.insert("lr".into(), lr.to_string());
    meta.insert("lambda".into(), cfg.pretrain.lambda.to_string());
    meta.insert("weight_decay".into(), cfg.pretrain.weight_decay.to_string());
    meta.insert("dropout".into(), cfg.model.dropout.to_string());
    meta.insert("precision".into(), cfg.pretrain.precision.name().into());
    meta.insert("config".into(), cfg.to_toml());
    crate::checkpoint::write_safetensors(path, &tensors, &meta)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((loss0, loss1))
}

/// Throughput of the training loader (`pstl bench --loader`).
#[derive(Debug, Clone)]
pub struct LoaderReport {
    /// Whether the split was read into memory first.
    pub in_memory: bool,
    /// Samples delivered (as CPU tensors).
    pub samples: usize,
    /// Wall seconds of the epochs.
    pub seconds: f64,
    /// Seconds to open the store and, in memory, read the split once (decompressing it).
    pub open_seconds: f64,
}

/// Shuffled batches of `data.path`'s train split for `epochs` epochs, from memory
/// or straight from the file, each turned into the `(N, C, T, V, M)` tensor the
/// step takes, with the configured prefetch.
pub fn loader(cfg: &Config, in_memory: bool, epochs: usize) -> Result<LoaderReport> {
    use crate::data::loader::{BatchLoader, LoaderOptions};
    let t0 = Instant::now();
    let store = crate::data::store::Store::open(&cfg.data.path)
        .with_context(|| format!("opening data store {}", cfg.data.path.display()))?;
    let loader = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            batch_size: cfg.pretrain.batch_size,
            shuffle: true,
            seed: cfg.run.seed,
            drop_last: false,
            prefetch: cfg.data.prefetch,
            memory_budget_bytes: if in_memory { usize::MAX } else { 0 },
        },
    )?;
    let open_seconds = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut samples = 0;
    for e in 0..epochs {
        for batch in loader.epoch(e as u64) {
            let b = batch?;
            let x = crate::device::batch_tensor(&b.x, b.shape, Device::Cpu);
            samples += x.size()[0] as usize;
        }
    }
    Ok(LoaderReport {
        in_memory: loader.in_memory(),
        samples,
        seconds: t0.elapsed().as_secs_f64(),
        open_seconds,
    })
}
