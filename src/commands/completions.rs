//! `pstl completions`: a shell completion script (`clap_complete`) or the man page
//! (`clap_mangen`) on stdout.

use crate::cli::{Cli, CompletionTarget, CompletionsArgs};
use anyhow::{Context, Result};
use clap::CommandFactory;

/// `pstl completions bash|zsh|fish|elvish|powershell|man`.
pub fn run(a: CompletionsArgs) -> Result<()> {
    write_completions(a.shell, &mut std::io::stdout().lock())
}

/// Write completions or the man page for `target` to `out`.
pub fn write_completions(target: CompletionTarget, out: &mut dyn std::io::Write) -> Result<()> {
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let shell = match target {
        CompletionTarget::Bash => Shell::Bash,
        CompletionTarget::Zsh => Shell::Zsh,
        CompletionTarget::Fish => Shell::Fish,
        CompletionTarget::Elvish => Shell::Elvish,
        CompletionTarget::Powershell => Shell::PowerShell,
        CompletionTarget::Man => {
            return clap_mangen::Man::new(cmd)
                .render(out)
                .context("writing the man page");
        }
    };
    clap_complete::generate(shell, &mut cmd, "pstl", out);
    Ok(())
}
