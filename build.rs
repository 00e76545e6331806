//! Build script: embed an rpath to the libtorch library folder so that `pstl` (and the
//! test and bench binaries) run without `LD_LIBRARY_PATH` or an activated venv, and
//! compile the c10d bridge (`src/dist/bridge.cpp`) and the profiler shim
//! (`src/bench/prof.cpp`) against that libtorch's headers.
//!
//! torch-sys (`links = "tch"`) exports the folder it linked against as
//! `DEP_TCH_LIBTORCH_LIB`, whether it came from `LIBTORCH_USE_PYTORCH=1` (the project's
//! `.venv`) or from a user-provided `LIBTORCH`. The bridge needs gloo's headers
//! (Debian: `libgloo-dev`); its NCCL part is built only when the libtorch has CUDA and
//! `nccl.h` plus the CUDA runtime headers are found (the PyPI wheel's `nvidia/*` folders,
//! `NCCL_INCLUDE_DIR` / `CUDA_HOME`, or `/usr/include`).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/dist/bridge.cpp");
    println!("cargo:rerun-if-changed=src/model/backend.cpp");
    println!("cargo:rerun-if-changed=src/bench/prof.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=NCCL_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE_DIR");
    let dir = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) if !dir.is_empty() => dir,
        _ => {
            println!("cargo:warning=torch-sys did not report its libtorch folder; no rpath set");
            return;
        }
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    let lib = PathBuf::from(&dir);
    let cuda = lib.join("libtorch_cuda.so").exists();
    build_bridge(&lib, cuda);
    // pstl calls no CUDA symbol itself, so the linker would drop libtorch_cuda
    // and CUDA would never be seen at run time: keep it NEEDED.
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// First of `candidates` that holds `file`.
fn find(candidates: &[PathBuf], file: &str) -> Option<PathBuf> {
    candidates.iter().find(|d| d.join(file).exists()).cloned()
}

fn env_dir(var: &str, sub: &str) -> Vec<PathBuf> {
    std::env::var_os(var)
        .map(|v| vec![PathBuf::from(v).join(sub)])
        .unwrap_or_default()
}

fn build_bridge(lib: &Path, cuda: bool) {
    let root = lib.parent().unwrap_or(lib);
    let include = root.join("include");
    let mut gloo_dirs = env_dir("GLOO_INCLUDE_DIR", "");
    gloo_dirs.push("/usr/include".into());
    let Some(gloo) = find(&gloo_dirs, "gloo/config.h") else {
        panic!(
            "gloo headers not found (gloo/config.h): install Debian's libgloo-dev \
             (`apt-get install libgloo-dev`, done by `make setup`) or set GLOO_INCLUDE_DIR"
        );
    };
    let mut b = cc::Build::new();
    b.cpp(true)
        .file("src/dist/bridge.cpp")
        .file("src/model/backend.cpp")
        // `pstl bench --kernels`: libtorch's Kineto profiler (headers as the bridge's).
        .file("src/bench/prof.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-w")
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_DISTRIBUTED", None);
    if cuda {
        // The PyPI wheel: site-packages/torch/lib -> site-packages/nvidia/*/include.
        let nvidia = root.parent().map(|p| p.join("nvidia")).unwrap_or_default();
        let mut nccl_dirs = env_dir("NCCL_INCLUDE_DIR", "");
        nccl_dirs.push(nvidia.join("nccl/include"));
        nccl_dirs.push("/usr/include".into());
        let mut cuda_dirs = env_dir("CUDA_HOME", "include");
        for sub in ["cu13/include", "cuda_runtime/include"] {
            cuda_dirs.push(nvidia.join(sub));
        }
        cuda_dirs.push("/usr/local/cuda/include".into());
        match (
            find(&nccl_dirs, "nccl.h"),
            find(&cuda_dirs, "crt/host_config.h"),
        ) {
            (Some(nccl), Some(cudart)) => {
                b.include(nccl)
                    .include(cudart)
                    .define("PSTL_NCCL", None)
                    .define("USE_C10D_NCCL", None)
                    .define("USE_CUDA", None);
            }
            _ => println!(
                "cargo:warning=libtorch has CUDA but nccl.h or the CUDA runtime headers \
                 were not found: the c10d bridge is built without NCCL (Gloo only)"
            ),
        }
    }
    b.compile("pstl_dist");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if cuda {
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
}
