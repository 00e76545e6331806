//! `pstl report`: the `results.json` files under run folders beside the paper's tables
//! ([`crate::report`]).

use super::print_summary;
use crate::cli::{GlobalOpts, ReportArgs};
use anyhow::Result;
use serde_json::json;

/// `pstl report [RUN_DIRS ...] [--out F.md]`.
pub fn run(a: ReportArgs, g: &GlobalOpts) -> Result<()> {
    let md = crate::report::report(&a.dirs)?;
    match &a.out {
        Some(out) => {
            crate::io::atomic_write(out, md.as_bytes())?;
            let text = format!("report: written to {}", out.display());
            print_summary(g, &text, json!({"command": "report", "out": out}));
        }
        None => print!("{md}"),
    }
    Ok(())
}
