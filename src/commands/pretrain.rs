//! `pstl pretrain`: rank 0 claims the run directory (synthetic data if configured and
//! missing, preflight checks, lock, resume config check), every rank joins the process
//! group of a launched job and trains ([`crate::train`]), and rank 0 runs the linear
//! and k-NN probes against a random-init encoder when `eval.after_pretrain` is set.

use super::{print_summary, setup_device};
use crate::cli::{GlobalOpts, PretrainArgs};
use crate::config::Config;
use crate::device::device_name;
use crate::eval::EvalOutput;
use crate::train::pretrain;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// `pstl pretrain --config C [--resume|--fresh] [--init CKPT] [--stop-after N]`.
pub fn run(a: PretrainArgs, g: &GlobalOpts) -> Result<()> {
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    if a.resume {
        crate::preflight::require_checkpoint(&cfg)?;
    }
    let opts = crate::train::PretrainOptions {
        resume: !a.fresh,
        init: a.init,
        stop_after: a.stop_after,
        ..Default::default()
    };
    run_pretrain(&cfg, &opts, g)
}

/// Rank 0's part of starting a run, before anything is trained: the synthetic data if
/// configured and missing, the preflight checks, `--fresh` moving an old run aside,
/// the run lock, the resume config check, `config.toml` / `command.txt`.
fn claim_run_dir(
    cfg: &Config,
    run_dir: &Path,
    opts: &crate::train::PretrainOptions,
) -> Result<(crate::rundir::RunLock, crate::preflight::Start)> {
    if !cfg.data.path.exists() {
        if !cfg.data.synth.create_if_missing {
            bail!(
                "data.path {} does not exist: prepare a store with `pstl prepare` or `pstl synth`",
                cfg.data.path.display()
            );
        }
        let s = &cfg.data.synth;
        super::synth::write_synth(
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
        if let Some(old) = crate::rundir::move_aside(run_dir)? {
            tracing::info!("pretrain: --fresh: moved the old run to {}", old.display());
        }
    }
    let lock = crate::rundir::RunLock::acquire(run_dir)?;
    let ckpt = crate::preflight::latest_checkpoint(run_dir)
        .unwrap_or_else(|| run_dir.join("checkpoint.safetensors"));
    if matches!(start, crate::preflight::Start::Resume(_)) {
        // The header's config (the tensors are verified when the trainer resumes).
        let meta = crate::preflight::checkpoint_header(&ckpt)?;
        let stored = meta["config"].as_str().unwrap_or_default();
        let changes = crate::rundir::config_changes(stored, cfg)
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
        crate::rundir::prepare_run_dir(run_dir, cfg)?;
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
    opts.stop = Some(crate::rundir::stop_flag()?);
    let mut device = setup_device(cfg)?;
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
        None => match crate::preflight::latest_checkpoint(&run_dir) {
            Some(ckpt) if opts.resume => {
                crate::preflight::checkpoint_epoch(&ckpt)? >= cfg.pretrain.epochs
            }
            _ => false,
        },
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
            crate::rundir::EXIT_INTERRUPTED
        );
        std::process::exit(crate::rundir::EXIT_INTERRUPTED);
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
        print_summary(g, &text, v);
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
    print_summary(g, &text, v);
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
        print_summary(g, &text, v);
        return Ok(());
    }
    let metrics = crate::rundir::read_metrics(&run_dir.join("metrics.csv")).unwrap_or_default();
    let final_loss = metrics.last().map_or(f64::NAN, |r| r.loss);
    let device = setup_device(cfg)?;
    let encoder = run_dir.join("encoder.safetensors");
    let (probe_text, results) =
        probe_after_pretrain(cfg, device, run_dir, &encoder, final_loss, None)?;
    text += &probe_text;
    v["results"] = results;
    print_summary(g, &text, v);
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
