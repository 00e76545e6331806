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

/// Print a command's final summary on stdout: the text, or with `--json` the summary
/// as one JSON object (the text then goes to the log).
pub fn report(g: &GlobalOpts, text: &str, v: serde_json::Value) {
    if g.json {
        tracing::info!("{text}");
        println!("{v}");
    } else {
        println!("{text}");
    }
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let g = cli.global.clone();
    if let Some(t) = g.threads {
        let max = crate::config::max_threads();
        if t > max {
            bail!("--threads {t}: at most {max} (0 = all cores)");
        }
    }
    match cli.command {
        Command::Prepare(p) => {
            set_threads(g.threads.unwrap_or(0));
            prepare(p, &g)
        }
        Command::Synth(a) => {
            check_synth_args(&a)?;
            set_threads(g.threads.unwrap_or(0));
            let opts = crate::data::synth::SynthOpts {
                classes: a.classes,
                train_per_class: a.train_per_class,
                test_per_class: a.test_per_class,
                seed: g.seed.unwrap_or(1),
                frames: crate::data::FRAMES,
            };
            let v = write_synth(&a.out, &opts)?;
            let text = format!(
                "synth: {} classes, {} train / {} test samples written to {} in {:.1}s",
                opts.classes,
                v["train"],
                v["test"],
                a.out.display(),
                v["seconds"].as_f64().unwrap_or(f64::NAN)
            );
            report(&g, &text, v);
            Ok(())
        }
        Command::Pretrain(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            if a.resume {
                crate::preflight::require_checkpoint(&cfg)?;
            }
            let opts = crate::train::PretrainOptions {
                resume: !a.fresh,
                init: a.init,
                stop_after: a.stop_after,
                ..Default::default()
            };
            run_pretrain(&cfg, &opts, &g)
        }
        Command::Eval(a) => run_eval(a, &g),
        Command::Embed(a) => {
            if a.batch_size == 0 {
                bail!("--batch-size 0: must be at least 1");
            }
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
            let text = format!("embed: features written to {}", a.output.display());
            report(&g, &text, json!({"command": "embed", "output": a.output}));
            Ok(())
        }
        Command::Export(a) => {
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let device = setup(&cfg)?;
            if a.torchscript.is_none()
                && a.safetensors.is_none()
                && a.pt.is_none()
                && a.hub.is_none()
            {
                bail!("export: give --torchscript OUT.pt, --safetensors OUT.safetensors, --pt OUT.pt and/or --hub DIR");
            }
            for (flag, v) in [("--frames", a.frames), ("--persons", a.persons)] {
                if !(1..=100_000).contains(&v) {
                    bail!("{flag} {v}: must be in 1..=100000");
                }
            }
            let mut written = serde_json::Map::new();
            let mut lines = Vec::new();
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
                written.insert("torchscript".into(), json!(out));
                lines.push(format!(
                    "export: TorchScript written to {} (input (N, 3, {}, {}, {}) on {}, batch size free)",
                    out.display(),
                    a.frames,
                    cfg.layout().num_joints,
                    a.persons,
                    device_name(device)
                ));
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
                    written.insert(what.into(), json!(out));
                    lines.push(format!(
                        "export: official-key {what} written to {}",
                        out.display()
                    ));
                }
            }
            if let Some(dir) = &a.hub {
                let opts = crate::export::hub::HubOptions {
                    frames: a.frames,
                    persons: a.persons,
                    stream: a.stream,
                    results: a.results.clone(),
                };
                crate::export::hub::export_hub(
                    &cfg,
                    &a.checkpoint,
                    a.classifier.as_deref(),
                    dir,
                    &opts,
                )?;
                written.insert("hub".into(), json!(dir));
                lines.push(format!(
                    "export: hub directory {} (model.safetensors, config.json, README.md)",
                    dir.display()
                ));
            }
            written.insert("command".into(), json!("export"));
            report(&g, &lines.join("\n"), serde_json::Value::Object(written));
            Ok(())
        }
        Command::Bench(a) => {
            if a.steps == 0 && a.dump.is_none() && !a.loader {
                bail!("--steps 0: must be at least 1 (0 only with --dump)");
            }
            let cfg = crate::cli::resolve_config(&a.cfg, &g)?;
            let device = setup(&cfg)?;
            bench(&cfg, device, &a, &g)
        }
        Command::Completions { shell } => {
            crate::cli::write_completions(shell, &mut std::io::stdout().lock())
        }
        Command::Report(a) => {
            let md = crate::report::report(&a.dirs)?;
            match &a.out {
                Some(out) => {
                    crate::io::atomic_write(out, md.as_bytes())?;
                    let text = format!("report: written to {}", out.display());
                    report(&g, &text, json!({"command": "report", "out": out}));
                }
                None => print!("{md}"),
            }
            Ok(())
        }
    }
}

/// Threads and device from the config.
fn setup(cfg: &Config) -> Result<tch::Device> {
    set_threads(cfg.run.threads);
    let device = resolve_device(&cfg.run.device)?;
    if device == tch::Device::Cpu {
        crate::device::keep_freed_memory();
    }
    Ok(device)
}

fn prepare(p: PrepareCmd, g: &GlobalOpts) -> Result<()> {
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
            benchmark: crate::cli::value_name(&benchmark),
            dataset: crate::cli::value_name(&dataset),
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
    for (file, why) in &report.skipped {
        tracing::warn!("skipped {file}: {why}");
    }
    let text = format!(
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
    let v = json!({
        "command": "prepare", "files": report.files, "parsed": report.parsed,
        "ignored": report.ignored, "skipped": report.skipped.len(), "train": report.train,
        "test": report.test, "seconds": report.seconds, "files_per_sec": report.files_per_sec,
    });
    crate::commands::report(g, &text, v);
    Ok(())
}

/// `synth` flags: class count within the generator's, at least one sample per class.
fn check_synth_args(a: &crate::cli::SynthArgs) -> Result<()> {
    use crate::data::synth::MAX_CLASSES;
    if !(1..=MAX_CLASSES).contains(&a.classes) {
        bail!("--classes {}: must be in 1..={MAX_CLASSES}", a.classes);
    }
    for (flag, v) in [
        ("--train-per-class", a.train_per_class),
        ("--test-per-class", a.test_per_class),
    ] {
        if !(1..=1_000_000).contains(&v) {
            bail!("{flag} {v}: must be in 1..=1000000");
        }
    }
    Ok(())
}

/// Generate the synthetic dataset into an HDF5 store; returns the summary.
pub fn write_synth(out: &Path, opts: &crate::data::synth::SynthOpts) -> Result<serde_json::Value> {
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
    Ok(json!({
        "command": "synth", "classes": opts.classes, "train": ntrain, "test": ntest,
        "out": out, "seconds": t0.elapsed().as_secs_f64(),
    }))
}

/// Rank 0's part of starting a run, before anything is trained: the synthetic data if
/// configured and missing, the preflight checks, `--fresh` moving an old run aside,
/// the run lock, the resume config check, `config.toml` / `command.txt`.
fn claim_run_dir(
    cfg: &Config,
    run_dir: &Path,
    opts: &crate::train::PretrainOptions,
) -> Result<(crate::runctl::RunLock, crate::preflight::Start)> {
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
    // Every check before the run directory is touched.
    let start = crate::preflight::check_pretrain(cfg, run_dir, opts)?;
    if !opts.resume {
        if let Some(old) = crate::runctl::move_aside(run_dir)? {
            tracing::info!("pretrain: --fresh: moved the old run to {}", old.display());
        }
    }
    let lock = crate::runctl::RunLock::acquire(run_dir)?;
    let ckpt = run_dir.join("checkpoint.safetensors");
    if matches!(start, crate::preflight::Start::Resume(_)) {
        let (_, meta) = crate::checkpoint::read_safetensors(&ckpt)?;
        let stored = meta.get("config").map(String::as_str).unwrap_or_default();
        let changes = crate::runctl::config_changes(stored, cfg)
            .with_context(|| format!("{}: stored config", ckpt.display()))?;
        if !changes.is_empty() {
            bail!(
                "{} was written with another config; refusing to resume. Changed: {}. \
                 Restore those values, or start over with --fresh (the old run is moved aside)",
                ckpt.display(),
                changes.join("; ")
            );
        }
    }
    if !matches!(start, crate::preflight::Start::Complete(_)) {
        crate::cli::prepare_run_dir(run_dir, cfg)?;
    }
    Ok((lock, start))
}

/// Join the process group of a launched job (torchrun, SLURM); the device of a CUDA run
/// becomes `cuda:LOCAL_RANK`.
fn join_group(
    cfg: &Config,
    launch: &crate::dist::Launch,
    device: &mut tch::Device,
) -> Result<Option<std::sync::Arc<crate::dist::ProcessGroup>>> {
    if !launch.is_distributed() {
        return Ok(None);
    }
    if let tch::Device::Cuda(_) = device {
        *device = tch::Device::Cuda(launch.local_rank);
    }
    let timeout = std::time::Duration::from_secs_f64(cfg.pretrain.dist_timeout_s);
    let pg = crate::dist::ProcessGroup::new(launch, timeout).with_context(|| {
        format!(
            "rank {}/{}: joining the process group at {}:{}",
            launch.rank, launch.world, launch.master_addr, launch.master_port
        )
    })?;
    Ok(Some(std::sync::Arc::new(pg)))
}

/// `pstl pretrain`: data (synthetic if configured and missing), training, and the
/// linear probe against a random-init encoder when `eval.after_pretrain` is set.
/// Under torchrun or SLURM ([`crate::dist::Launch`]) every rank runs this; rank 0 owns
/// the run directory (checks, lock, files) and the others wait for it.
pub fn run_pretrain(
    cfg: &Config,
    opts: &crate::train::PretrainOptions,
    g: &GlobalOpts,
) -> Result<()> {
    let run_dir = cfg.run.dir.join(&cfg.run.name);
    let launch = crate::dist::Launch::from_env()?;
    let mut opts = opts.clone();
    opts.stop = Some(crate::runctl::stop_flag()?);
    let mut device = setup(cfg)?;
    opts.dist = join_group(cfg, &launch, &mut device)?;
    // Rank 0 owns the run directory; the lock lives until this function returns.
    let claimed = if launch.rank == 0 {
        Some(claim_run_dir(cfg, &run_dir, &opts)?)
    } else {
        None
    };
    if let Some(pg) = &opts.dist {
        // The others wait for rank 0's checks, directory and data (its failure ends all).
        pg.barrier()
            .context("waiting for rank 0 to check and prepare the run")?;
    }
    let complete = match &claimed {
        Some((_, start)) => matches!(start, crate::preflight::Start::Complete(_)),
        None => {
            let ckpt = run_dir.join("checkpoint.safetensors");
            opts.resume
                && ckpt.is_file()
                && crate::preflight::checkpoint_epoch(&ckpt)? >= cfg.pretrain.epochs
        }
    };
    if complete {
        return match &claimed {
            Some((_, crate::preflight::Start::Complete(epoch))) => {
                finished_run(cfg, &run_dir, *epoch, g)
            }
            _ => Ok(()),
        };
    }
    tracing::info!(
        "pretrain: run {} on {} with {} thread(s), data {}{}",
        run_dir.display(),
        device_name(device),
        tch::get_num_threads(),
        cfg.data.path.display(),
        match &opts.dist {
            Some(pg) => format!(", rank {} of {}", pg.rank, pg.world),
            None => String::new(),
        }
    );
    let report = pretrain(cfg, device, &run_dir, &opts)?;
    if let Some(flag) = &opts.stop {
        // From here on (the probe) a SIGTERM or SIGINT ends the process at once.
        flag.store(!report.interrupted, std::sync::atomic::Ordering::SeqCst);
    }
    if report.interrupted {
        tracing::warn!(
            "pretrain: stopped by a signal at step {}; checkpoint {} written. Run the same \
             command again to continue (exit status {})",
            report.step,
            run_dir.join("checkpoint.safetensors").display(),
            crate::runctl::EXIT_INTERRUPTED
        );
        std::process::exit(crate::runctl::EXIT_INTERRUPTED);
    }
    if launch.rank != 0 {
        return Ok(());
    }
    finish_pretrain(cfg, device, &run_dir, &report, g)
}

/// Rank 0 after training: the summary, and the probe when configured.
fn finish_pretrain(
    cfg: &Config,
    device: tch::Device,
    run_dir: &Path,
    report: &crate::train::PretrainReport,
    g: &GlobalOpts,
) -> Result<()> {
    let mut text = format!(
        "pretrain: {} epoch(s) in {:.1}s, final loss {:.4}, encoder {}",
        report.epochs_run,
        report.seconds,
        report.final_loss,
        report.encoder.display()
    );
    let mut v = json!({
        "command": "pretrain", "epochs_run": report.epochs_run,
        "epochs_done": report.epochs_done, "seconds": report.seconds,
        "final_loss": report.final_loss, "encoder": report.encoder,
    });
    if report.epochs_done < cfg.pretrain.epochs {
        text += &format!(
            "\npretrain: stopped after epoch {}; continue with --resume",
            report.epochs_done
        );
        crate::commands::report(g, &text, v);
        return Ok(());
    }
    if cfg.eval.after_pretrain {
        let (probe_text, results) = probe_after_pretrain(
            cfg,
            device,
            run_dir,
            &report.encoder,
            report.final_loss,
            Some(report.seconds),
        )?;
        text += &probe_text;
        v["results"] = results;
    }
    crate::commands::report(g, &text, v);
    Ok(())
}

/// A rerun of a finished run: nothing is trained and nothing rewritten; only a missing
/// `results.json` (a run killed during the probe) is made, from the logged final loss.
fn finished_run(cfg: &Config, run_dir: &Path, epoch: usize, g: &GlobalOpts) -> Result<()> {
    let mut text = format!(
        "pretrain: run {} is complete ({epoch} of {} epochs); nothing to train. \
         Add --fresh to start over (the old run is moved aside).",
        run_dir.display(),
        cfg.pretrain.epochs
    );
    let mut v = json!({"command": "pretrain", "epochs_run": 0, "epochs_done": epoch});
    let results = run_dir.join("results.json");
    if !cfg.eval.after_pretrain || results.exists() {
        if results.exists() {
            text += &format!("\npretrain: results in {}", results.display());
        }
        report(g, &text, v);
        return Ok(());
    }
    let metrics = crate::train::read_metrics(&run_dir.join("metrics.csv")).unwrap_or_default();
    let final_loss = metrics.last().map_or(f64::NAN, |r| r.loss);
    let device = setup(cfg)?;
    let encoder = run_dir.join("encoder.safetensors");
    let (probe_text, results) =
        probe_after_pretrain(cfg, device, run_dir, &encoder, final_loss, None)?;
    text += &probe_text;
    v["results"] = results;
    report(g, &text, v);
    Ok(())
}

/// The linear probe on the pretrained and on a random-init encoder; `results.json`.
/// Returns the summary lines and the results.
fn probe_after_pretrain(
    cfg: &Config,
    device: tch::Device,
    run_dir: &Path,
    encoder: &Path,
    final_loss: f64,
    pretrain_seconds: Option<f64>,
) -> Result<(String, serde_json::Value)> {
    let data = crate::eval::load_data(cfg)?;
    let t0 = Instant::now();
    let names = crate::data::classes::for_store(&cfg.data.path);
    let trained_out =
        EvalOutput::new(&run_dir.join("eval-linear"))?.with_class_names(names.clone());
    let trained = crate::eval::linear_with_data(cfg, Some(encoder), device, &trained_out, &data)?;
    let random_out =
        EvalOutput::new(&run_dir.join("eval-linear-random-init"))?.with_class_names(names);
    let random = crate::eval::linear_with_data(cfg, None, device, &random_out, &data)?;
    // k-NN on eval-mode features: one forward pass over both splits per encoder.
    let knn = |ckpt: Option<&Path>| -> Result<Vec<f64>> {
        let (_vs, enc) = crate::eval::load_encoder(cfg, ckpt, device)?;
        let (tr, te) = crate::eval::split_features(&enc, &data, cfg, device)?;
        Ok(crate::eval::knn_accuracy(
            &tr,
            &data.train_y,
            &te,
            &data.test_y,
            data.num_classes,
            &cfg.eval.knn_k,
        ))
    };
    let (knn_trained, knn_random) = (knn(Some(encoder))?, knn(None)?);
    let results = json!({
        "linear_top1": trained["top1_last"],
        "linear_top1_best": trained["top1_best"],
        "random_init_linear_top1": random["top1_last"],
        "random_init_linear_top1_best": random["top1_best"],
        "knn_k": cfg.eval.knn_k,
        "knn_top1": knn_trained,
        "random_init_knn_top1": knn_random,
        "final_loss": final_loss,
        "pretrain_seconds": pretrain_seconds,
        "probe_seconds": t0.elapsed().as_secs_f64(),
        "encoder": encoder.display().to_string(),
    });
    crate::io::atomic_write(
        &run_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut text = format!(
        "\nlinear probe top-1 (per-sample, last / best epoch of {}): PSTL {:.2}% / {:.2}% vs random-init {:.2}% / {:.2}%",
        cfg.eval.linear_epochs,
        f(&trained, "top1_last"),
        f(&trained, "top1_best"),
        f(&random, "top1_last"),
        f(&random, "top1_best"),
    );
    let ks: Vec<String> = cfg.eval.knn_k.iter().map(|k| k.to_string()).collect();
    let pct = |v: &[f64]| {
        v.iter()
            .map(|a| format!("{a:.2}%"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    text += &format!(
        "\nk-NN top-1 (cosine, k = {}): PSTL {} vs random-init {} (results in {})",
        ks.join(" / "),
        pct(&knn_trained),
        pct(&knn_random),
        run_dir.join("results.json").display()
    );
    Ok((text, results))
}

fn run_eval(a: EvalArgs, g: &GlobalOpts) -> Result<()> {
    let mut cfg = crate::cli::resolve_config(&a.cfg, g)?;
    cfg.eval.robust_part_sets.extend(a.parts.iter().cloned());
    if !a.parts.is_empty() {
        cfg.validate(&format!("--parts {}", a.parts.join(" ")))?;
    }
    let device = setup(&cfg)?;
    let name = format!("{:?}", a.protocol).to_lowercase();
    let dir: PathBuf = a
        .out
        .clone()
        .unwrap_or_else(|| cfg.run.dir.join(&cfg.run.name).join(format!("eval-{name}")));
    let out =
        EvalOutput::new(&dir)?.with_class_names(crate::data::classes::for_store(&cfg.data.path));
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
    // Written once the protocol succeeded: a failed command leaves the old one.
    crate::cli::prepare_run_dir(&dir, &cfg)?;
    let text = format!(
        "eval {name}: {} (details in {})",
        summary(&v),
        dir.join("results.json").display()
    );
    let mut out = serde_json::Map::new();
    out.insert("command".into(), json!("eval"));
    out.insert("protocol".into(), json!(name));
    out.insert("results".into(), json!(dir.join("results.json")));
    if let Some(obj) = v.as_object() {
        out.extend(
            obj.iter()
                .filter(|(k, _)| *k != "config")
                .map(|(k, x)| (k.clone(), x.clone())),
        );
    }
    report(g, &text, serde_json::Value::Object(out));
    Ok(())
}

/// The figures of a results object on one line, each named by what it is: top-1 of
/// the best epoch (the paper's figure) and of the last, both per-sample.
fn summary(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let num = |x: Option<&Value>| x.and_then(Value::as_f64);
    let trained = |o: &Value| -> Option<String> {
        let best = num(o.get("top1_best"))?;
        let last = num(o.get("top1_last")).unwrap_or(f64::NAN);
        Some(format!(
            "top-1 {best:.2} best epoch / {last:.2} last epoch (per-sample)"
        ))
    };
    let mut parts = Vec::new();
    if let Some(t) = trained(v) {
        parts.push(t);
    }
    let Some(obj) = v.as_object() else {
        return String::new();
    };
    for (k, val) in obj {
        let plain = k.starts_with("top1_k") || k == "top1" || k == "top5" || k == "top1_full";
        if plain {
            if let Some(n) = val.as_f64() {
                parts.push(format!("{k}={n:.2}"));
            }
        } else if k.starts_with("semi") || k == "linear" || k == "finetune" {
            if let Some(t) = trained(val) {
                parts.push(format!("{k}: {t}"));
            }
        }
    }
    if let Some(mode) = obj.get("mode").and_then(Value::as_str) {
        parts.push(format!("(ensemble of {mode})"));
    }
    parts.join("; ")
}

/// Pretraining throughput on random batches, split by phase, with peak memory and
/// achieved GFLOP/s; optionally one step dumped for the PyTorch check.
fn bench(
    cfg: &Config,
    device: tch::Device,
    a: &crate::cli::BenchArgs,
    g: &GlobalOpts,
) -> Result<()> {
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
    report(g, &text, v);
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
