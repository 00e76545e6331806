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
    if a.steps == 0 && a.dump.is_none() && !a.loader && !a.epoch {
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
    if a.epoch {
        return epoch(cfg, device, a, g);
    }
    if a.phases {
        return phases(cfg, device, a, g);
    }
    if a.kernels {
        return kernels(cfg, device, a, g);
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

/// `--phases`: ms per step of each phase, and the allocator's (or the process's) peak.
fn phases(cfg: &Config, device: tch::Device, a: &BenchArgs, g: &GlobalOpts) -> Result<()> {
    let r = crate::bench::phases(cfg, device, a.steps, a.warmup)?;
    let total = r.total_ms();
    let text = format!(
        "bench: phases of {} steps of batch {} on {} ({}): {:.1} ms/step in all",
        r.steps,
        cfg.pretrain.batch_size,
        device_name(device),
        cfg.pretrain.precision.name(),
        total
    );
    let peak = crate::bench::cuda_peak_bytes(device).or_else(crate::bench::peak_rss_bytes);
    let v = json!({
        "command": "bench", "mode": "phases", "steps": r.steps, "device": device_name(device),
        "batch_size": cfg.pretrain.batch_size, "precision": cfg.pretrain.precision.name(),
        "total_ms": total, "peak_bytes": peak,
        "phases_ms": r.phases.iter().map(|(n, ms)| json!({"phase": n, "ms": ms})).collect::<Vec<_>>(),
    });
    print_summary(g, &text, v);
    if !g.json {
        for (name, ms) in &r.phases {
            println!(
                "PHASE {name:<36} {ms:9.2} ms {:5.1} %",
                100.0 * ms / total.max(1e-12)
            );
        }
        if let Some(b) = peak {
            println!("bench: peak memory {:.0} MiB", b as f64 / 1048576.0);
        }
    }
    Ok(())
}

/// `--epoch`: one epoch through the loader and the step.
fn epoch(cfg: &Config, device: tch::Device, a: &BenchArgs, g: &GlobalOpts) -> Result<()> {
    let r = crate::bench::epoch(cfg, device, a.warmup)?;
    let text = format!(
        "bench: one epoch of {} ({} samples, {} steps of batch {}) on {} ({}): {:.2} s, {:.1} samples/s, {:.1} % waiting for the loader (last loss {:.3})",
        cfg.data.path.display(),
        r.samples,
        r.steps,
        cfg.pretrain.batch_size,
        device_name(device),
        cfg.pretrain.precision.name(),
        r.seconds,
        r.samples_per_s(),
        100.0 * r.wait_share(),
        r.last_loss
    );
    let v = json!({
        "command": "bench", "mode": "epoch", "samples": r.samples, "steps": r.steps,
        "device": device_name(device), "precision": cfg.pretrain.precision.name(),
        "seconds": r.seconds, "samples_per_sec": r.samples_per_s(),
        "loader_wait_seconds": r.wait_seconds, "loader_wait_share": r.wait_share(),
        "last_loss": r.last_loss,
    });
    print_summary(g, &text, v);
    if !g.json {
        println!("RESULT samples_per_s={:.4}", r.samples_per_s());
    }
    Ok(())
}

/// `--kernels`: ms per step by kernel family.
fn kernels(cfg: &Config, device: tch::Device, a: &BenchArgs, g: &GlobalOpts) -> Result<()> {
    let r = crate::bench::kernels(cfg, device, a.steps, a.warmup)?;
    let total: f64 = r.families.iter().map(|(_, ms)| ms).sum();
    let text = format!(
        "bench: {} by kernel family over {} profiled steps of batch {} on {} ({}): {:.2} ms/step",
        r.what,
        r.steps,
        cfg.pretrain.batch_size,
        device_name(device),
        cfg.pretrain.precision.name(),
        total
    );
    let v = json!({
        "command": "bench", "mode": "kernels", "steps": r.steps, "device": device_name(device),
        "precision": cfg.pretrain.precision.name(), "what": r.what, "total_ms": total,
        "families_ms": r.families.iter().map(|(f, ms)| json!({"family": f, "ms": ms})).collect::<Vec<_>>(),
    });
    print_summary(g, &text, v);
    if !g.json {
        println!("KERNELS total {total:.2} ms/step of {}", r.what);
        for (fam, ms) in &r.families {
            println!(
                "KERNEL {fam:<22} {ms:9.2} ms {:5.1} %",
                100.0 * ms / total.max(1e-12)
            );
        }
        for (name, ms) in &r.top {
            let short: String = name.chars().take(100).collect();
            println!("TOP {ms:9.2} ms [{}] {short}", crate::bench::family(name));
        }
    }
    Ok(())
}
