//! What each `pstl` command does, one file per command (`pstl <command>` runs
//! `commands::<command>::run` with its own argument struct from [`crate::cli`]); this
//! file holds what they share: the final summary on stdout and the device setup.

pub mod bench;
pub mod completions;
pub mod embed;
pub mod eval;
pub mod export;
pub mod prepare;
pub mod pretrain;
pub mod report;
pub mod show;
pub mod synth;
pub mod verify;

use crate::cli::GlobalOpts;
use crate::config::Config;
use crate::device::{resolve_device, set_threads};
use anyhow::{bail, Result};

/// Print a command's final summary on stdout: the text, or with `--json` the summary
/// as one JSON object (the text then goes to the log).
pub fn print_summary(g: &GlobalOpts, text: &str, v: serde_json::Value) {
    if g.json {
        tracing::info!("{text}");
        println!("{v}");
    } else {
        println!("{text}");
    }
}

/// `--threads` within the machine's cores (0 = all).
pub fn check_threads(g: &GlobalOpts) -> Result<()> {
    if let Some(t) = g.threads {
        let max = crate::config::max_threads();
        if t > max {
            bail!("--threads {t}: at most {max} (0 = all cores)");
        }
    }
    Ok(())
}

/// Threads and device from the config; on CPU, freed memory is kept for reuse.
pub fn setup_device(cfg: &Config) -> Result<tch::Device> {
    set_threads(cfg.run.threads);
    let device = resolve_device(&cfg.run.device)?;
    if device == tch::Device::Cpu {
        crate::device::keep_freed_memory();
    }
    crate::model::backend::apply_env(device)?;
    Ok(device)
}
