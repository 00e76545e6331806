//! `pstl embed`: eval-mode encoder features of an `.npy` input ([`crate::export::embed`]).

use super::{print_summary, setup_device};
use crate::cli::{EmbedArgs, GlobalOpts};
use anyhow::{bail, Result};
use serde_json::json;

/// `pstl embed --checkpoint ENC --input X.npy --output Z.npy`.
pub fn run(a: EmbedArgs, g: &GlobalOpts) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size 0: must be at least 1");
    }
    let cfg = crate::cli::resolve_config(&a.cfg, g)?;
    let device = setup_device(&cfg)?;
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
    print_summary(g, &text, json!({"command": "embed", "output": a.output}));
    Ok(())
}
