//! What each `pstl` command does: glue between the CLI and the library modules.

use crate::cli::{Cli, Command, EvalArgs, GlobalOpts, PrepareCmd, Protocol};
use crate::config::Config;
use crate::data::store::{write_store, SplitData, StoreMeta};
use crate::device::{device_name, resolve_device, set_threads};
use crate::eval::EvalOutput;
use crate::train::pretrain;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let g = cli.global.clone();
    match cli.command {
        Command::Prepare(p) => {
            set_threads(g.threads.unwrap_or(0));
            prepare(p)
        }
        Command::Synth(a) => {
            set_threads(g.threads.unwrap_or(0));
            let opts = crate::data::synth::SynthOpts {
                classes: a.classes,
                train_per_class: a.train_per_class,
                test_per_class: a.test_per_class,
                seed: g.seed.unwrap_or(1),
                frames: crate::data::FRAMES,
            };
            write_synth(&a.out, &opts)
        }
        Command::Pretrain(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let opts = crate::train::PretrainOptions {
                resume: !a.fresh,
                init: a.init,
                stop_after: a.stop_after,
            };
            run_pretrain(&cfg, &opts)
        }
        Command::Eval(a) => run_eval(a, &g),
        Command::Embed(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let device = setup(&cfg)?;
            crate::export::embed(
                &cfg,
                &a.checkpoint,
                &a.input,
                &a.output,
                a.stream,
                &a.drop_joints,
                a.batch_size,
                device,
            )?;
            println!("embed: features written to {}", a.output.display());
            Ok(())
        }
        Command::Export(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let device = setup(&cfg)?;
            if a.torchscript.is_none() && a.safetensors.is_none() && a.pt.is_none() {
                bail!("export: give --torchscript OUT.pt, --safetensors OUT.safetensors and/or --pt OUT.pt");
            }
            if let Some(out) = &a.torchscript {
                let opts = crate::export::ExportOptions {
                    frames: a.frames,
                    persons: a.persons,
                    stream: a.stream,
                };
                crate::export::export_torchscript(
                    &cfg,
                    &a.checkpoint,
                    a.classifier.as_deref(),
                    out,
                    &opts,
                    device,
                )?;
                println!(
                    "export: TorchScript written to {} (input (N, 3, {}, {}, {}) on {}, batch size free)",
                    out.display(),
                    a.frames,
                    cfg.layout().num_joints,
                    a.persons,
                    device_name(device)
                );
            }
            use crate::export::WeightFormat;
            let weights = [
                (&a.safetensors, WeightFormat::Safetensors, "safetensors"),
                (&a.pt, WeightFormat::TorchPt, "torch.save state_dict"),
            ];
            for (out, fmt, what) in weights {
                if let Some(out) = out {
                    crate::export::export_weights(
                        &cfg,
                        &a.checkpoint,
                        a.classifier.as_deref(),
                        out,
                        fmt,
                    )?;
                    println!("export: official-key {what} written to {}", out.display());
                }
            }
            Ok(())
        }
        Command::Bench(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let device = setup(&cfg)?;
            bench(&cfg, device, &a)
        }
    }
}

/// Threads and device from the config.
fn setup(cfg: &Config) -> Result<tch::Device> {
    set_threads(cfg.run.threads);
    resolve_device(&cfg.run.device)
}

fn prepare(p: PrepareCmd) -> Result<()> {
    use crate::data::prepare;
    let progress = crate::progress::Progress::is_terminal();
    let report = match p {
        PrepareCmd::Ntu {
            raw,
            out,
            benchmark,
            dataset,
            ignore,
            frames,
            skip_bad,
        } => prepare::prepare_ntu(&prepare::PrepareNtuOpts {
            raw,
            out,
            benchmark,
            dataset,
            ignore,
            frames,
            skip_bad,
            progress,
        })?,
        PrepareCmd::Pku {
            skeletons,
            labels,
            split,
            out,
            part,
            frames,
            skip_bad,
        } => prepare::prepare_pku(&prepare::PreparePkuOpts {
            skeletons,
            labels,
            split,
            out,
            part: part.to_string(),
            frames,
            skip_bad,
            progress,
        })?,
        PrepareCmd::Npy {
            train_data,
            train_labels,
            test_data,
            test_labels,
            out,
            dataset,
            benchmark,
        } => prepare::prepare_npy(&prepare::PrepareNpyOpts {
            train_data,
            train_labels,
            test_data,
            test_labels,
            out,
            dataset,
            benchmark,
        })?,
    };
    println!(
        "prepare: {} file(s), {} parsed, {} ignored, {} skipped; {} train / {} test samples in {:.1}s ({:.0} files/s)",
        report.files,
        report.parsed,
        report.ignored,
        report.skipped.len(),
        report.train,
        report.test,
        report.seconds,
        report.files_per_sec
    );
    for (file, why) in &report.skipped {
        eprintln!("skipped {file}: {why}");
    }
    Ok(())
}

/// Generate the synthetic dataset into an HDF5 store.
pub fn write_synth(out: &Path, opts: &crate::data::synth::SynthOpts) -> Result<()> {
    let t0 = Instant::now();
    let (train, test) = crate::data::synth::generate(opts);
    let meta = StoreMeta::new(
        "synthetic",
        "default",
        opts.classes,
        opts.frames,
        "pstl synth",
    );
    let to_split = |s: crate::data::synth::SynthSplit| SplitData {
        x: s.x,
        y: s.y,
        names: s.names,
    };
    let (ntrain, ntest) = (train.y.len(), test.y.len());
    write_store(out, &meta, &to_split(train), &to_split(test))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "synth: {} classes, {ntrain} train / {ntest} test samples written to {} in {:.1}s",
        opts.classes,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `pstl pretrain`: data (synthetic if configured and missing), training, and the
/// linear probe against a random-init encoder when `eval.after_pretrain` is set.
pub fn run_pretrain(cfg: &Config, opts: &crate::train::PretrainOptions) -> Result<()> {
    let run_dir = cfg.run.dir.join(&cfg.run.name);
    crate::cli::prepare_run_dir(&run_dir, cfg)?;
    let device = setup(cfg)?;
    if !cfg.data.path.exists() {
        if !cfg.data.synth.create_if_missing {
            bail!(
                "data.path {} does not exist: prepare a store with `pstl prepare` or `pstl synth`",
                cfg.data.path.display()
            );
        }
        let s = &cfg.data.synth;
        write_synth(
            &cfg.data.path,
            &crate::data::synth::SynthOpts {
                classes: s.classes,
                train_per_class: s.train_per_class,
                test_per_class: s.test_per_class,
                seed: s.seed,
                frames: crate::data::FRAMES,
            },
        )?;
    }
    eprintln!(
        "pretrain: run {} on {} with {} thread(s), data {}",
        run_dir.display(),
        device_name(device),
        tch::get_num_threads(),
        cfg.data.path.display()
    );
    let report = pretrain(cfg, device, &run_dir, opts)?;
    println!(
        "pretrain: {} epoch(s) in {:.1}s, final loss {:.4}, encoder {}",
        report.epochs_run,
        report.seconds,
        report.final_loss,
        report.encoder.display()
    );
    if report.epochs_done < cfg.pretrain.epochs {
        println!(
            "pretrain: stopped after epoch {}; continue with --resume",
            report.epochs_done
        );
        return Ok(());
    }
    if cfg.eval.after_pretrain {
        let data = crate::eval::load_data(cfg)?;
        let t0 = Instant::now();
        let trained_out = EvalOutput::new(&run_dir.join("eval-linear"))?;
        let trained =
            crate::eval::linear_with_data(cfg, Some(&report.encoder), device, &trained_out, &data)?;
        let random_out = EvalOutput::new(&run_dir.join("eval-linear-random-init"))?;
        let random = crate::eval::linear_with_data(cfg, None, device, &random_out, &data)?;
        let results = json!({
            "linear_top1": trained["top1_last"],
            "linear_top1_best": trained["top1_best"],
            "random_init_linear_top1": random["top1_last"],
            "random_init_linear_top1_best": random["top1_best"],
            "final_loss": report.final_loss,
            "pretrain_seconds": report.seconds,
            "probe_seconds": t0.elapsed().as_secs_f64(),
            "encoder": report.encoder.display().to_string(),
        });
        crate::io::atomic_write(
            &run_dir.join("results.json"),
            serde_json::to_string_pretty(&results)?.as_bytes(),
        )?;
        println!(
            "linear probe top-1: PSTL {:.2}% vs random-init {:.2}% (results in {})",
            trained["top1_last"].as_f64().unwrap_or(f64::NAN),
            random["top1_last"].as_f64().unwrap_or(f64::NAN),
            run_dir.join("results.json").display()
        );
    }
    Ok(())
}

fn run_eval(a: EvalArgs, g: &GlobalOpts) -> Result<()> {
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    let device = setup(&cfg)?;
    let name = format!("{:?}", a.protocol).to_lowercase();
    let dir: PathBuf = a
        .out
        .clone()
        .unwrap_or_else(|| cfg.run.dir.join(&cfg.run.name).join(format!("eval-{name}")));
    crate::cli::prepare_run_dir(&dir, &cfg)?;
    let out = EvalOutput::new(&dir)?;
    let ckpt = a.checkpoint.as_deref();
    let v = match a.protocol {
        Protocol::Linear => crate::eval::linear(&cfg, ckpt, device, &out)?,
        Protocol::Knn => crate::eval::knn(&cfg, ckpt, device, &out)?,
        Protocol::Finetune => crate::eval::finetune(&cfg, ckpt, device, &out)?,
        Protocol::Semi => crate::eval::semi(&cfg, ckpt, device, &out)?,
        Protocol::Transfer => crate::eval::transfer(&cfg, ckpt, device, &out)?,
        Protocol::Robust => crate::eval::robust(&cfg, ckpt, a.classifier.as_deref(), device, &out)?,
        Protocol::Ensemble => {
            let weights = if a.weights.is_empty() {
                cfg.eval.ensemble_weights.clone()
            } else {
                a.weights.clone()
            };
            crate::eval::ensemble(&cfg, &a.scores, &weights, &out)?
        }
    };
    println!(
        "eval {name}: {} (details in {})",
        summary(&v),
        dir.join("results.json").display()
    );
    Ok(())
}

/// The figures of a results object on one line.
fn summary(v: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if k.starts_with("top") || k.starts_with("semi") || k == "linear" || k == "finetune" {
                match val {
                    serde_json::Value::Number(n) => {
                        parts.push(format!("{k}={:.2}", n.as_f64().unwrap_or(f64::NAN)))
                    }
                    serde_json::Value::Object(o) => {
                        if let Some(t) = o.get("top1_last").and_then(|x| x.as_f64()) {
                            parts.push(format!("{k}.top1_last={t:.2}"));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    parts.join(" ")
}

/// Pretraining throughput on random batches, split by phase, with peak memory and
/// achieved GFLOP/s; optionally one step dumped for the PyTorch check.
fn bench(cfg: &Config, device: tch::Device, a: &crate::cli::BenchArgs) -> Result<()> {
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
    println!(
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
    println!(
        "bench: per step: views (augment + masks) {:.1} ms, forward {:.1} ms, backward {:.1} ms, optimizer {:.1} ms; {:.1} GFLOP/step",
        per(r.split.views),
        per(r.split.forward),
        per(r.split.backward),
        per(r.split.optimizer),
        r.flops / r.steps as f64 / 1e9
    );
    let mem = match (device, r.peak_rss) {
        (tch::Device::Cpu, Some(b)) => format!("{:.0} MiB peak RSS", b as f64 / 1048576.0),
        _ => "n/a (tch exposes no CUDA allocator statistics)".into(),
    };
    println!("bench: memory: {mem}");
    println!("RESULT samples_per_s={:.4}", r.samples_per_s());
    Ok(())
}
