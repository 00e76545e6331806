//! The last `pretrain.keep_checkpoints` checkpoints of a run, newest first
//! (`checkpoint.safetensors`, `checkpoint.1.safetensors`, ...): a new one is written in
//! full under a temporary name, the older ones shift down one place, then it is renamed
//! into place, so a failed write keeps every older checkpoint and a kill at any point
//! leaves complete files only. Resume takes the newest that verifies.

use super::Trainer;
use crate::rundir::RunFiles;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fault injection for the data-parallel fault tests: `PSTL_FAULT_CHECKPOINT_WRITE=N`
/// makes this process's N-th checkpoint write fail (as a full disk would).
pub const FAULT_ENV: &str = "PSTL_FAULT_CHECKPOINT_WRITE";

static WRITES: AtomicUsize = AtomicUsize::new(0);

fn injected_fault(path: &Path) -> Result<()> {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    let fail = std::env::var(FAULT_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if fail == Some(n) {
        bail!(
            "writing {}: injected fault ({FAULT_ENV}={n}): no space left on device",
            path.display()
        );
    }
    Ok(())
}

/// Write the trainer's checkpoint as the newest of `keep`.
pub fn save_kept(trainer: &Trainer, files: &RunFiles, keep: usize) -> Result<()> {
    let bytes = trainer.checkpoint_bytes()?;
    let newest = files.checkpoint();
    crate::io::atomic_write_with(&newest, |tmp| {
        injected_fault(&newest)?;
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", newest.display()))?;
        shift(files, keep)
    })
}

/// Move checkpoint `i` to `i + 1` from the oldest kept down, dropping those past `keep`.
fn shift(files: &RunFiles, keep: usize) -> Result<()> {
    for old in files.checkpoints() {
        let i = index_of(files, &old);
        if i + 1 >= keep {
            std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    for i in (0..keep.saturating_sub(1)).rev() {
        let (from, to) = (files.checkpoint_n(i), files.checkpoint_n(i + 1));
        if from.is_file() {
            std::fs::rename(&from, &to)
                .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

fn index_of(files: &RunFiles, path: &Path) -> usize {
    (0..)
        .find(|&i| files.checkpoint_n(i) == path)
        .unwrap_or(usize::MAX)
}

/// A trainer resumed from the newest kept checkpoint that loads and verifies; the ones
/// skipped are moved aside by the writer (`<name>.bad`) with a warning saying why.
/// `None` when there is no checkpoint; an error when none verifies.
pub fn resume_newest(
    cfg: &crate::config::Config,
    device: tch::Device,
    files: &RunFiles,
    writer: bool,
) -> Result<Option<(Trainer, PathBuf)>> {
    let found = files.checkpoints();
    if found.is_empty() {
        return Ok(None);
    }
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    for path in &found {
        let mut trainer = Trainer::new(cfg, device);
        match trainer.resume(path) {
            Ok(()) => {
                if writer {
                    set_aside(&skipped, path, trainer.step)?;
                }
                return Ok(Some((trainer, path.clone())));
            }
            Err(e) => skipped.push((path.clone(), format!("{e:#}"))),
        }
    }
    let why: Vec<String> = skipped
        .iter()
        .map(|(p, e)| format!("{}: {e}", p.display()))
        .collect();
    bail!(
        "no checkpoint of {} verifies ({} tried): {}. Check them with `pstl verify`; \
         start over with --fresh (the run is moved aside)",
        files.dir.display(),
        found.len(),
        why.join("; ")
    )
}

/// Warn about each skipped checkpoint and rename it out of the kept set.
fn set_aside(skipped: &[(PathBuf, String)], chosen: &Path, step: u64) -> Result<()> {
    for (path, why) in skipped {
        let bad = PathBuf::from(format!("{}.bad", path.display()));
        tracing::warn!(
            "resume: skipped {} ({why}); moved it to {}; resuming from {} (step {step}) instead",
            path.display(),
            bad.display(),
            chosen.display()
        );
        std::fs::rename(path, &bad)
            .with_context(|| format!("moving {} to {}", path.display(), bad.display()))?;
    }
    Ok(())
}
