//! `pstl`: the command-line entry point (see `pstl --help`).

fn main() {
    // Errors go to stderr directly (not through the log filter, so `-qq` or RUST_LOG=off
    // never hide them); every other diagnostic is a `tracing` event (see `logging`).
    if let Err(e) = pstl::cli::main() {
        eprintln!("error: {}", pstl::cli::error_chain(&e));
        std::process::exit(1);
    }
}
