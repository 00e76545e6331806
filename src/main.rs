//! `pstl`: the command-line entry point (see `pstl --help`): parse, set up logging,
//! dispatch to `pstl::commands::<command>::run`.

use clap::Parser;
use pstl::cli::{Cli, Command};
use pstl::commands;

fn main() {
    let cli = Cli::parse();
    pstl::logging::init(cli.global.log_format, cli.global.verbosity());
    tracing::debug!(
        "pstl {}: {}",
        env!("CARGO_PKG_VERSION"),
        pstl::rundir::shell_join(&std::env::args().collect::<Vec<_>>())
    );
    // Errors go to stderr directly (not through the log filter, so `-qq` or RUST_LOG=off
    // never hide them); every other diagnostic is a `tracing` event (see `logging`).
    if let Err(e) = run(cli) {
        eprintln!("error: {}", pstl::cli::error_chain(&e));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    commands::check_threads(g)?;
    match cli.command {
        Command::Prepare(a) => commands::prepare::run(a, g),
        Command::Synth(a) => commands::synth::run(a, g),
        Command::Pretrain(a) => commands::pretrain::run(a, g),
        Command::Eval(a) => commands::eval::run(a, g),
        Command::Embed(a) => commands::embed::run(a, g),
        Command::Export(a) => commands::export::run(a, g),
        Command::Bench(a) => commands::bench::run(a, g),
        Command::Completions(a) => commands::completions::run(a),
        Command::Report(a) => commands::report::run(a, g),
        Command::Show(a) => commands::show::run(a, g),
        Command::Verify(a) => commands::verify::run(a, g),
    }
}
