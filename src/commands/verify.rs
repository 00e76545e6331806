//! `pstl verify PATH...`: checks stores, checkpoints and exports offline
//! ([`crate::verify`]), one line per file; exit 1 if any fails.

use crate::cli::{GlobalOpts, VerifyArgs};
use anyhow::{bail, Result};

/// Check every path; print `OK` or `FAIL` with the reason, one line each.
pub fn run(a: VerifyArgs, _g: &GlobalOpts) -> Result<()> {
    let mut failed = 0;
    for path in &a.paths {
        match crate::verify::verify_file(path) {
            Ok(what) => println!("OK   {}: {what}", path.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {}", path.display(), crate::cli::error_chain(&e));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} file(s) failed verification", a.paths.len());
    }
    Ok(())
}
