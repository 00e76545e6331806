//! `pstl`: the command-line entry point (see `pstl --help`).

fn main() {
    if let Err(e) = pstl::cli::main() {
        eprintln!("error: {}", pstl::cli::error_chain(&e));
        std::process::exit(1);
    }
}
