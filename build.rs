//! Build script: embed an rpath to the libtorch library folder so that `pstl` (and the
//! test and bench binaries) run without `LD_LIBRARY_PATH` or an activated venv.
//!
//! torch-sys (`links = "tch"`) exports the folder it linked against as
//! `DEP_TCH_LIBTORCH_LIB`, whether it came from `LIBTORCH_USE_PYTORCH=1` (the project's
//! `.venv`) or from a user-provided `LIBTORCH`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            // pstl calls no CUDA symbol itself, so the linker would drop libtorch_cuda
            // and CUDA would never be seen at run time: keep it NEEDED.
            if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
                println!("cargo:rustc-link-arg=-ltorch_cuda");
                println!("cargo:rustc-link-arg=-Wl,--as-needed");
            }
        }
        _ => println!("cargo:warning=torch-sys did not report its libtorch folder; no rpath set"),
    }
}
