//! `pstl bench`: the pretraining step timed on random batches ([`crate::bench`]), one
//! step dumped for the PyTorch check, or the data loader timed.

use super::{print_summary, setup_device};
use crate::cli::{BenchArgs, GlobalOpts};
use crate::config::Config;
use crate::device::device_name;
use anyhow::{bail, Result};
use serde_json::json;

/// `pstl bench --config C [--steps N] [--dump F] [--loader]`.
pub fn run(a: BenchArgs, g: &GlobalOpts) -> Result<()> {
    if a.steps == 0 && a.dump.is_none() && !a.loader {
        bail!("--steps 0: must be at least 1 (0 only with --dump)");
    }
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    let device = setup_device(&cfg)?;
    bench(&cfg, device, &a, g)
}

/// Pretraining throughput on random batches, split by phase, with peak memory and
/// achieved GFLOP/s; optionally one step dumped for the PyTorch check.
fn bench(cfg: &Config, device: tch::Device, a: &BenchArgs, g: &GlobalOpts) -> Result<()> {
    if a.loader {
        // Interleaved: memory, disk, memory, disk.
        for in_memory in [true, false, true, false] {
            let r = crate::bench::loader(cfg, in_memory, a.epochs)?;
            println!(
                "bench: loader {} ({}, batch {}, prefetch {}, {} threads): {} samples in {:.3} s, {:.0} samples/s (open + read {:.2} s)",
                if r.in_memory { "from memory" } else { "from disk" },
                cfg.data.path.display(),
                cfg.pretrain.batch_size,
                cfg.data.prefetch,
                rayon::current_num_threads(),
                r.samples,
                r.seconds,
                r.samples as f64 / r.seconds,
                r.open_seconds
            );
        }
        return Ok(());
    }
    if let Some(path) = &a.dump {
        let (before, after) = crate::bench::dump_step(cfg, device, path)?;
        println!(
            "bench: step written to {} (loss {before:.6}, after one Adam update {after:.6})",
            path.display()
        );
    }
    if a.steps == 0 {
        return Ok(());
    }
    let r = crate::bench::run(cfg, device, a.steps, a.warmup)?;
    let per = |s: f64| 1e3 * s / r.steps as f64;
    let text = format!(
        "bench: {} steps of batch {} on {} ({} threads, projector {}, {}): {:.3} s/step, {:.2} samples/s, {:.1} GFLOP/s (last loss {:.3})",
        r.steps,
        r.batch,
        device_name(device),
        tch::get_num_threads(),
        cfg.model.projector_dim,
        cfg.pretrain.precision.name(),
        r.seconds / r.steps as f64,
        r.samples_per_s(),
        r.gflops(),
        r.last_loss
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    let mem = match (device, r.peak_rss, r.peak_cuda) {
        (tch::Device::Cuda(_), _, Some(b)) => format!("{:.0} MiB allocator peak", mib(b)),
        (_, Some(b), _) => format!("{:.0} MiB peak RSS", mib(b)),
        _ => "n/a".into(),
    };
    let v = json!({
        "command": "bench", "steps": r.steps, "batch_size": r.batch, "device": device_name(device),
        "threads": tch::get_num_threads(), "precision": cfg.pretrain.precision.name(),
        "seconds_per_step": r.seconds / r.steps as f64,
        "samples_per_sec": r.samples_per_s(), "gflops_per_sec": r.gflops(),
        "flops_per_step": r.flops / r.steps as f64, "last_loss": r.last_loss,
        "split_ms": {"views": per(r.split.views), "forward": per(r.split.forward),
                     "backward": per(r.split.backward), "optimizer": per(r.split.optimizer)},
        "peak_rss_bytes": r.peak_rss, "peak_cuda_allocated_bytes": r.peak_cuda,
    });
    print_summary(g, &text, v);
    if !g.json {
        println!(
            "bench: per step: views (augment + masks) {:.1} ms, forward {:.1} ms, backward {:.1} ms, optimizer {:.1} ms; {:.1} GFLOP/step",
            per(r.split.views),
            per(r.split.forward),
            per(r.split.backward),
            per(r.split.optimizer),
            r.flops / r.steps as f64 / 1e9
        );
        println!("bench: memory: {mem}");
        println!("RESULT samples_per_s={:.4}", r.samples_per_s());
    }
    Ok(())
}
