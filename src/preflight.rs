//! Checks before a pretraining run writes anything: the command-line flags against the
//! run directory (`--resume`, `--init`, `--stop-after`, a finished run) and the config
//! against the data it will meet (frames, joints, an empty or non-finite train split).
//! A failed check leaves the run directory as it was.

use crate::config::Config;
use crate::data::store::Store;
use crate::train::PretrainOptions;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// Where a pretraining invocation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No checkpoint (or `--fresh`): epoch 0.
    Fresh,
    /// Continue from the checkpoint at this epoch.
    Resume(usize),
    /// The checkpoint has every configured epoch: nothing to train.
    Complete(usize),
}

/// `--resume` asks for a checkpoint: an error listing the runs there when it is absent.
pub fn require_checkpoint(cfg: &Config) -> Result<()> {
    let run_dir = cfg.run.dir.join(&cfg.run.name);
    let ckpt = run_dir.join("checkpoint.safetensors");
    if latest_checkpoint(&run_dir).is_some() {
        return Ok(());
    }
    let mut runs: Vec<String> = std::fs::read_dir(&cfg.run.dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| latest_checkpoint(&e.path()).is_some())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    let known = if runs.is_empty() {
        format!("no run in {} has one", cfg.run.dir.display())
    } else {
        format!("runs with one: {}", runs.join(", "))
    };
    bail!(
        "--resume: run.name `{}` has no checkpoint ({} is missing; {known})",
        cfg.run.name,
        ckpt.display()
    )
}

/// The flags against the run directory; then, unless the run is complete, the data.
pub fn check_pretrain(cfg: &Config, run_dir: &Path, opts: &PretrainOptions) -> Result<Start> {
    if opts.stop_after == Some(0) {
        bail!("--stop-after 0: must be at least 1 epoch");
    }
    let latest = latest_checkpoint(run_dir);
    let start = if let (true, Some(ckpt)) = (opts.resume, latest) {
        if let Some(init) = &opts.init {
            bail!(
                "--init {}: run {} has a checkpoint and would resume from it, ignoring --init; \
                 add --fresh to start over from {}, or pick another run.name",
                init.display(),
                run_dir.display(),
                init.display()
            );
        }
        let epoch = checkpoint_epoch(&ckpt)?;
        if epoch >= cfg.pretrain.epochs {
            Start::Complete(epoch)
        } else {
            Start::Resume(epoch)
        }
    } else {
        Start::Fresh
    };
    if let Some(init) = &opts.init {
        if !init.is_file() {
            bail!("--init {}: no such file", init.display());
        }
    }
    if !matches!(start, Start::Complete(_)) {
        check_train_data(cfg)?;
    }
    Ok(start)
}

/// The train split against the config: present, at least 2 samples, frames and joints
/// enough for MATM and CSM, every value finite (one streaming pass over the split).
pub fn check_train_data(cfg: &Config) -> Result<()> {
    let path = &cfg.data.path;
    let store =
        Store::open(path).with_context(|| format!("opening data store {}", path.display()))?;
    let meta = store.meta();
    if meta.layout != cfg.model.layout {
        bail!(
            "{}: layout `{}` does not match model.layout `{}`",
            path.display(),
            meta.layout,
            cfg.model.layout
        );
    }
    let n = store.len("train")?;
    if n < 2 {
        bail!(
            "{}: the train split has {n} sample(s); pretraining needs at least 2 (batch statistics)",
            path.display()
        );
    }
    let joints = crate::data::NTU_JOINTS;
    cfg.validate_data(
        &format!("data.path {}", path.display()),
        meta.frames,
        joints,
    )?;
    store.check_finite("train")?;
    Ok(())
}

/// The newest kept checkpoint of a run directory.
pub fn latest_checkpoint(run_dir: &Path) -> Option<std::path::PathBuf> {
    crate::rundir::RunFiles {
        dir: run_dir.to_path_buf(),
    }
    .latest_checkpoint()
}

/// The `epoch` recorded in a training checkpoint's metadata (read from the safetensors
/// header alone, not the tensors).
pub fn checkpoint_epoch(path: &Path) -> Result<usize> {
    let meta = checkpoint_header(path)?;
    meta["epoch"]
        .as_str()
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: not a pstl training checkpoint: no epoch in its metadata",
                path.display()
            )
        })
}

/// The metadata of a safetensors file, from its header alone (no tensor is read or
/// verified).
pub fn checkpoint_header(path: &Path) -> Result<serde_json::Value> {
    let bad =
        |why: &str| anyhow::anyhow!("{}: not a pstl training checkpoint: {why}", path.display());
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than a header"))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad("header length implausible"));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("truncated header"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    Ok(v["__metadata__"].clone())
}
